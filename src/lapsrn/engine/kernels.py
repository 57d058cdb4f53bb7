"""The engine's loops, compiled by Numba: Winograd transforms with their activations fused, the image branch.

Imported only to compile them, once per machine (``native.build``); a process then loads their machine
code without importing Numba. Each kernel has a C entry point (at the end) taking data pointers and sizes.
The kernels must not raise or allocate (``error_model="numpy"``, no bounds checks, work arrays passed in):
then nothing in their code calls back into Numba or Python, which ``native.build`` checks. No memory
that a call writes is reached through two of its arrays (``kernel``): the callers in ``winograd.py``
pass distinct buffers (``conv3x3`` checks), and the work arrays are disjoint parts of one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import carray, cfunc, njit, types

NOALIAS = [True]  # whether the kernels were compiled with their arrays apart (False where Numba's internals moved)


def kernel(fn: Callable):
    """``fn`` compiled by Numba with no exception paths (nothing left to call Python) and its arrays apart.

    Apart: LLVM is told (``noalias``) that memory a call writes through one array is not reached
    through another. Otherwise it cannot know, and guards each vectorised loop over the 64 channels
    with run-time overlap checks between every pair of pointers it reads and writes, redone for
    every tile and window column: a large part of the 3x3 input transform's time
    (``scripts/speed_candidates.py``).
    Numba's parallel loops set this flag where its alias analysis allows, but Numba has no option for
    it, so it is set on the kernel's compile flags (``tests/test_engine.py`` checks that a compiled
    kernel carries it). That reaches into Numba's internals: where they have moved, the kernel compiles
    without the flag, slower and with the same results, and ``NOALIAS`` says so (``native`` warns).
    """
    dispatcher = njit(nogil=True, fastmath=True, error_model="numpy")(fn)
    try:
        from numba.core.compiler import Flags

        compiler = dispatcher._compiler
        customize = compiler._customize_flags
        if "noalias" not in getattr(Flags, "options", {}):
            raise AttributeError("Flags.noalias")
    except (ImportError, AttributeError):
        NOALIAS[0] = False
        return dispatcher

    def flags(f):
        f = customize(f)
        f.noalias = True
        return f

    compiler._customize_flags = flags
    return dispatcher


f2, f3, f4, f5, f8 = np.float32(2), np.float32(3), np.float32(4), np.float32(5), np.float32(8)  # float32 constants


@njit(inline="always")
def bt8(d0, d1, d2, d3, d4, d5, d6, d7):
    """B^T d of F(6x6, 3x3) at the points 0, 1, -1, 2, -2, 1/2, -1/2 (``BT``), hand-expanded.

    Rows 1 and 2 (points 1, -1), 3 and 4 (2, -2), 5 and 6 (1/2, -1/2) are an even part plus and minus an
    odd part, so each pair costs one sum of each.
    """
    even1, odd1 = d2 + d6 - np.float32(4.25) * d4, d1 + d5 - np.float32(4.25) * d3
    even2, odd2 = (
        np.float32(0.25) * d2 - np.float32(1.25) * d4 + d6,
        np.float32(0.5) * d1 - np.float32(2.5) * d3 + f2 * d5,
    )
    even3, odd3 = f4 * d2 - f5 * d4 + d6, f2 * d1 - np.float32(2.5) * d3 + np.float32(0.5) * d5
    return (
        d6 - d0 + np.float32(5.25) * (d2 - d4),
        even1 + odd1,
        even1 - odd1,
        even2 + odd2,
        even2 - odd2,
        even3 + odd3,
        even3 - odd3,
        d7 - d1 + np.float32(5.25) * (d3 - d5),
    )


@njit(inline="always")
def at8(m0, m1, m2, m3, m4, m5, m6, m7):
    """A^T m of F(6x6, 3x3) (``AT``): row k sums the pairs of opposite points times p^k, even and odd powers apart."""
    s1, d1, s2, d2, s3, d3 = m1 + m2, m1 - m2, m3 + m4, m3 - m4, m5 + m6, m5 - m6
    return (
        m0 + s1 + s2 + s3,
        d1 + f2 * d2 + np.float32(0.5) * d3,
        s1 + f4 * s2 + np.float32(0.25) * s3,
        d1 + f8 * d2 + np.float32(0.125) * d3,
        s1 + np.float32(16) * s2 + np.float32(0.0625) * s3,
        d1 + np.float32(32) * d2 + np.float32(0.03125) * d3 + m7,
    )


@njit(inline="always")
def leaky(x, slope):
    """LeakyReLU with this slope (1.0: the identity)."""
    return x if x > 0 else x * slope


@kernel
def input_transform(xp, v, u, first, n, tw, slope):
    """v[8i + j, t, c] = (B^T d B)[i, j], d the 8x8 window of LeakyReLU_slope(xp) at tile first + t.

    Tiles of 6x6 outputs, tw to a row; u: (8, 8, C), a work array.
    """
    c_in = xp.shape[2]
    for t in range(n):
        r, q = 6 * ((first + t) // tw), 6 * ((first + t) % tw)
        for b in range(8):  # columns of the window: B^T along the rows
            for c in range(c_in):
                u[0, b, c], u[1, b, c], u[2, b, c], u[3, b, c], u[4, b, c], u[5, b, c], u[6, b, c], u[7, b, c] = bt8(
                    leaky(xp[r, q + b, c], slope),
                    leaky(xp[r + 1, q + b, c], slope),
                    leaky(xp[r + 2, q + b, c], slope),
                    leaky(xp[r + 3, q + b, c], slope),
                    leaky(xp[r + 4, q + b, c], slope),
                    leaky(xp[r + 5, q + b, c], slope),
                    leaky(xp[r + 6, q + b, c], slope),
                    leaky(xp[r + 7, q + b, c], slope),
                )
        for i in range(8):  # then along the columns
            for c in range(c_in):
                (
                    v[8 * i, t, c],
                    v[8 * i + 1, t, c],
                    v[8 * i + 2, t, c],
                    v[8 * i + 3, t, c],
                    v[8 * i + 4, t, c],
                    v[8 * i + 5, t, c],
                    v[8 * i + 6, t, c],
                    v[8 * i + 7, t, c],
                ) = bt8(u[i, 0, c], u[i, 1, c], u[i, 2, c], u[i, 3, c], u[i, 4, c], u[i, 5, c], u[i, 6, c], u[i, 7, c])


@kernel
def output_transform(m, bias, out, skip, use_skip, s, o, first, n, tw, h, w, slope):
    """LeakyReLU_slope((A^T m A) + bias (+ skip)) into tile first + t's 6x6 pixels of out (within h x w).

    s: (6, 8, C) and o: (6, C), work arrays.
    """
    c_out = out.shape[2]
    for t in range(n):
        r, q = 6 * ((first + t) // tw), 6 * ((first + t) % tw)
        for j in range(8):  # A^T along the rows
            for k in range(c_out):
                s[0, j, k], s[1, j, k], s[2, j, k], s[3, j, k], s[4, j, k], s[5, j, k] = at8(
                    m[j, t, k],
                    m[8 + j, t, k],
                    m[16 + j, t, k],
                    m[24 + j, t, k],
                    m[32 + j, t, k],
                    m[40 + j, t, k],
                    m[48 + j, t, k],
                    m[56 + j, t, k],
                )
        for i in range(6):  # then along the columns, one output row at a time
            if r + i >= h:
                break
            for k in range(c_out):
                o[0, k], o[1, k], o[2, k], o[3, k], o[4, k], o[5, k] = at8(
                    s[i, 0, k], s[i, 1, k], s[i, 2, k], s[i, 3, k], s[i, 4, k], s[i, 5, k], s[i, 6, k], s[i, 7, k]
                )
            for j in range(6):
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


@kernel
def upsample_input_transform(xp, v, u, first, n, tw):
    """v[5i + j, t, c] = (B^T d B)[i, j], d the 5x5 window of xp at tile first + t (F(4x4, 2x2)); u: (5, 5, C) work."""
    c_in = xp.shape[2]
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


@kernel
def upsample_output_transform(m, bias, out, s, o, first, n, tw, h, w, slope):
    """Output channel (2a + b) * C + k of tile pixel (i, j) -> out[1 + 2(4ti + i) + a, 1 + 2(4tj + j) + b, k].

    s: (4, 5, 4C) and o: (4, 4C), work arrays (o: the output row's 4 pixels, every phase's channels).
    """
    c_out = out.shape[2]
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


@kernel
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


# C entry points, compiled by ``native.build`` to machine code once per machine. Arrays come as data
# pointers (float32, C-contiguous) with the sizes that cannot be derived: a feature map's padded
# height and width, the tiles to a row tw (ceil(w / 6) for the 3x3 convs, ceil(w / 4) for the
# upsampler), a band's v and m are (positions, n, channels): 64 or 25 positions, the upsampler's m
# with 4C channels; the work arrays as the kernels above take them.


def _c_signature(kinds: str) -> types.FunctionType:
    """A C entry point's signature: "p" a float32 pointer, "i" an int64, "f" a float32 (``native.SIGNATURES``)."""
    of = {"p": types.CPointer(types.float32), "i": types.int64, "f": types.float32}
    return types.void(*(of[k] for k in kinds))


ENTRY = {"fastmath": True, "error_model": "numpy"}


def entry_points() -> dict:
    """name -> C entry point, compiled now: importing this module compiles nothing."""

    @cfunc(_c_signature("piiippiiif"), **ENTRY)
    def input_transform_c(xp, xh, xw, c, v, u, first, n, tw, slope):
        x = carray(xp, (xh, xw, c))
        input_transform(x, carray(v, (64, n, c)), carray(u, (8, 8, c)), first, n, tw, slope)

    @cfunc(_c_signature("pppiiipippiiiif"), **ENTRY)
    def output_transform_c(m, bias, out, oh, ow, c, skip, use_skip, s, o, first, n, h, w, slope):
        skip_shape = (oh, ow, c) if use_skip else (1, 1, 1)
        output_transform(
            carray(m, (64, n, c)),
            carray(bias, c),
            carray(out, (oh, ow, c)),
            carray(skip, skip_shape),
            use_skip != 0,
            carray(s, (6, 8, c)),
            carray(o, (6, c)),
            first,
            n,
            (w + 5) // 6,
            h,
            w,
            slope,
        )

    @cfunc(_c_signature("piiippiii"), **ENTRY)
    def upsample_input_transform_c(xp, xh, xw, c, v, u, first, n, tw):
        x = carray(xp, (xh, xw, c))
        upsample_input_transform(x, carray(v, (25, n, c)), carray(u, (5, 5, c)), first, n, tw)

    @cfunc(_c_signature("pppiiippiiiif"), **ENTRY)
    def upsample_output_transform_c(m, bias, out, oh, ow, c, s, o, first, n, h, w, slope):
        upsample_output_transform(
            carray(m, (25, n, 4 * c)),
            carray(bias, c),
            carray(out, (oh, ow, c)),
            carray(s, (4, 5, 4 * c)),
            carray(o, (4, 4 * c)),
            first,
            n,
            (w + 3) // 4,
            h,
            w,
            slope,
        )

    @cfunc(_c_signature("piipp"), **ENTRY)
    def image_upsample_c(x, h, w, k, out):
        image_upsample(carray(x, (h, w)), carray(k, (4, 4)), carray(out, (2 * h, 2 * w)))

    return {
        "input_transform": input_transform_c,
        "output_transform": output_transform_c,
        "upsample_input_transform": upsample_input_transform_c,
        "upsample_output_transform": upsample_output_transform_c,
        "image_upsample": image_upsample_c,
    }
