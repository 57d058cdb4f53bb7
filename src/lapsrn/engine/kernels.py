"""The engine's loops, compiled by Numba: Winograd transforms with their activations fused, the image branch.

Imported only when the engine first runs, so ``import lapsrn`` stays light. Module-level functions,
so Numba's on-disk cache finds them again in the next process (kernels made inside a function
are closures, which its cache cannot key, and were recompiled by every run).
"""

from __future__ import annotations

import sys

import numpy as np


def _load_numba_without_scipy_linalg() -> None:
    """Load Numba's NumPy support with ``scipy.linalg`` hidden: Numba's start, its import and first cached
    kernel, takes 0.75 s instead of 1.14 s (docs/results/speed_candidates.md).

    Numba's first compile or cache load imports ``numba.np.arraymath``, which imports
    ``scipy.linalg`` (with ``numpy.f2py``) only to learn whether SciPy's BLAS is
    there for compiled ``np.convolve``. These kernels never call it, so the import is refused
    for that moment; then Numba's answer is set to whether SciPy is installed, without importing
    it, so a host program's own compiled code behaves as it would have (Numba imports
    ``scipy.linalg`` itself when such code compiles). ``scipy.linalg`` stays importable
    afterwards (tested); if something already imported it, there is nothing to save.
    """
    if "scipy.linalg" in sys.modules or "numba.np.arraymath" in sys.modules:
        return
    import importlib.util

    sys.modules["scipy.linalg"] = None  # an import of it raises ImportError while this entry stands
    try:
        import numba.np.arraymath as arraymath
    finally:
        del sys.modules["scipy.linalg"]
    arraymath._HAVE_BLAS = importlib.util.find_spec("scipy") is not None


_load_numba_without_scipy_linalg()

from numba import njit  # noqa: E402


def _compiled(fn):
    """Numba-compile a kernel that releases the GIL, cached on disk; without a writable cache folder, at every start."""
    try:
        return njit(nogil=True, fastmath=True, cache=True)(fn)
    except RuntimeError:  # Numba found no writable folder for its cache (read-only install, no HOME)
        return njit(nogil=True, fastmath=True)(fn)


f2, f3, f4, f5, f8 = np.float32(2), np.float32(3), np.float32(4), np.float32(5), np.float32(8)  # float32 constants


@njit(inline="always")
def bt6(d0, d1, d2, d3, d4, d5):
    """B^T d of F(4x4, 3x3), hand-expanded (the nonzero entries of B^T are 1, 2, 4, 5)."""
    return (
        f4 * d0 - f5 * d2 + d4,
        -f4 * (d1 + d2) + d3 + d4,
        f4 * (d1 - d2) - d3 + d4,
        -f2 * (d1 - d3) - d2 + d4,
        f2 * (d1 - d3) - d2 + d4,
        f4 * d1 - f5 * d3 + d5,
    )


@njit(inline="always")
def at6(m0, m1, m2, m3, m4, m5):
    """A^T m of F(4x4, 3x3), hand-expanded (the nonzero entries of A^T are 1, 2, 4, 8)."""
    return (
        m0 + m1 + m2 + m3 + m4,
        (m1 - m2) + f2 * (m3 - m4),
        (m1 + m2) + f4 * (m3 + m4),
        (m1 - m2) + f8 * (m3 - m4) + m5,
    )


@njit(inline="always")
def leaky(x, slope):
    """LeakyReLU with this slope (1.0: the identity)."""
    return x if x > 0 else x * slope


@_compiled
def input_transform(xp, v, first, n, tw, slope):
    """v[6i + j, t, c] = (B^T d B)[i, j], d the 6x6 window of LeakyReLU_slope(xp) at tile first + t."""
    c_in = xp.shape[2]
    u = np.empty((6, 6, c_in), np.float32)
    for t in range(n):
        r, q = 4 * ((first + t) // tw), 4 * ((first + t) % tw)
        for b in range(6):  # columns of the window: B^T along the rows
            for c in range(c_in):
                u[0, b, c], u[1, b, c], u[2, b, c], u[3, b, c], u[4, b, c], u[5, b, c] = bt6(
                    leaky(xp[r, q + b, c], slope),
                    leaky(xp[r + 1, q + b, c], slope),
                    leaky(xp[r + 2, q + b, c], slope),
                    leaky(xp[r + 3, q + b, c], slope),
                    leaky(xp[r + 4, q + b, c], slope),
                    leaky(xp[r + 5, q + b, c], slope),
                )
        for i in range(6):  # then along the columns
            for c in range(c_in):
                (
                    v[6 * i, t, c],
                    v[6 * i + 1, t, c],
                    v[6 * i + 2, t, c],
                    v[6 * i + 3, t, c],
                    v[6 * i + 4, t, c],
                    v[6 * i + 5, t, c],
                ) = bt6(u[i, 0, c], u[i, 1, c], u[i, 2, c], u[i, 3, c], u[i, 4, c], u[i, 5, c])


@_compiled
def output_transform(m, bias, out, skip, use_skip, first, n, tw, h, w, slope):
    """LeakyReLU_slope((A^T m A) + bias (+ skip)) into tile first + t's 4x4 pixels of out (within h x w)."""
    c_out = out.shape[2]
    s = np.empty((4, 6, c_out), np.float32)
    o = np.empty((4, c_out), np.float32)
    for t in range(n):
        r, q = 4 * ((first + t) // tw), 4 * ((first + t) % tw)
        for j in range(6):  # A^T along the rows
            for k in range(c_out):
                s[0, j, k], s[1, j, k], s[2, j, k], s[3, j, k] = at6(
                    m[j, t, k], m[6 + j, t, k], m[12 + j, t, k], m[18 + j, t, k], m[24 + j, t, k], m[30 + j, t, k]
                )
        for i in range(4):  # then along the columns, one output row at a time
            if r + i >= h:
                break
            for k in range(c_out):
                o[0, k], o[1, k], o[2, k], o[3, k] = at6(
                    s[i, 0, k], s[i, 1, k], s[i, 2, k], s[i, 3, k], s[i, 4, k], s[i, 5, k]
                )
            for j in range(4):
                if q + j < w:
                    for k in range(c_out):
                        x = o[j, k] + bias[k]
                        x = x + skip[1 + r + i, 1 + q + j, k] if use_skip else x
                        out[1 + r + i, 1 + q + j, k] = leaky(x, slope)


@njit(inline="always")
def bt5(d0, d1, d2, d3, d4):
    """B^T d of F(4x4, 2x2) at the points 0, 1, -1, 2 (``BT2``), hand-expanded."""
    return (f2 * (d0 - d2) - d1 + d3, -f2 * d1 - d2 + d3, f2 * d1 - f3 * d2 + d3, d3 - d1, f2 * (d1 - d3) - d2 + d4)


@njit(inline="always")
def at5(m0, m1, m2, m3, m4):
    """A^T m of F(4x4, 2x2) (``AT2``), hand-expanded."""
    return m0 + m1 + m2 + m3, m1 - m2 + f2 * m3, m1 + m2 + f4 * m3, m1 - m2 + f8 * m3 + m4


@_compiled
def upsample_input_transform(xp, v, first, n, tw):
    """v[5i + j, t, c] = (B^T d B)[i, j], d the 5x5 window of xp at tile first + t (F(4x4, 2x2))."""
    c_in = xp.shape[2]
    u = np.empty((5, 5, c_in), np.float32)
    for t in range(n):
        r, q = 4 * ((first + t) // tw), 4 * ((first + t) % tw)
        for b in range(5):
            for c in range(c_in):
                u[0, b, c], u[1, b, c], u[2, b, c], u[3, b, c], u[4, b, c] = bt5(
                    xp[r, q + b, c],
                    xp[r + 1, q + b, c],
                    xp[r + 2, q + b, c],
                    xp[r + 3, q + b, c],
                    xp[r + 4, q + b, c],
                )
        for i in range(5):
            for c in range(c_in):
                v[5 * i, t, c], v[5 * i + 1, t, c], v[5 * i + 2, t, c], v[5 * i + 3, t, c], v[5 * i + 4, t, c] = bt5(
                    u[i, 0, c], u[i, 1, c], u[i, 2, c], u[i, 3, c], u[i, 4, c]
                )


@_compiled
def upsample_output_transform(m, bias, out, first, n, tw, h, w, slope):
    """Output channel (2a + b) * C + k of tile pixel (i, j) -> out[1 + 2(4ti + i) + a, 1 + 2(4tj + j) + b, k]."""
    c_out = out.shape[2]
    s = np.empty((4, 5, 4 * c_out), np.float32)
    o = np.empty((4, 4 * c_out), np.float32)  # the output row's 4 pixels, every phase's channels
    for t in range(n):
        r, q = 4 * ((first + t) // tw), 4 * ((first + t) % tw)
        for j in range(5):  # A^T along the rows
            for k in range(4 * c_out):
                s[0, j, k], s[1, j, k], s[2, j, k], s[3, j, k] = at5(
                    m[j, t, k], m[5 + j, t, k], m[10 + j, t, k], m[15 + j, t, k], m[20 + j, t, k]
                )
        for i in range(4):  # then along the columns, one output row at a time
            if r + i >= h:
                break
            for k in range(4 * c_out):
                o[0, k], o[1, k], o[2, k], o[3, k] = at5(s[i, 0, k], s[i, 1, k], s[i, 2, k], s[i, 3, k], s[i, 4, k])
            for j in range(4):
                if q + j >= w:
                    break
                for ab in range(4):  # output phase (a, b) goes to pixel (2 row + a, 2 column + b)
                    y, x = 1 + 2 * (r + i) + ab // 2, 1 + 2 * (q + j) + ab % 2
                    for k in range(c_out):
                        out[y, x, k] = leaky(o[j, ab * c_out + k] + bias[k], slope)


@_compiled
def image_upsample(x, k, out):
    """out = ConvTranspose2d(x, k, stride 2, padding 1): a 4x4 kernel, one channel, no bias.

    Output row 2m reads input rows m (tap 1) and m - 1 (tap 3); row 2m + 1 reads rows m + 1
    (tap 0) and m (tap 2); the same along columns; rows outside the input are zero.
    """
    h, w = x.shape
    for o in range(2 * h):
        m, a = o // 2, o % 2
        r0, kr0, r1, kr1 = (m, 1, m - 1, 3) if a == 0 else (m + 1, 0, m, 2)
        for p in range(2 * w):
            n, b = p // 2, p % 2
            c0, kc0, c1, kc1 = (n, 1, n - 1, 3) if b == 0 else (n + 1, 0, n, 2)
            s = np.float32(0)
            if 0 <= r0 < h:
                if 0 <= c0 < w:
                    s += x[r0, c0] * k[kr0, kc0]
                if 0 <= c1 < w:
                    s += x[r0, c1] * k[kr0, kc1]
            if 0 <= r1 < h:
                if 0 <= c0 < w:
                    s += x[r1, c0] * k[kr1, kc0]
                if 0 <= c1 < w:
                    s += x[r1, c1] * k[kr1, kc1]
            out[o, p] = s
