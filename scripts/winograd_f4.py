"""F(4x4, 3x3): the 3x3 conv's Winograd transforms as the engine ran them before F(6x6, 3x3), kept here so that
``speed_candidates.py`` can measure the two side by side. Not used by the package.

Each 4x4 block of outputs comes from a 6x6 block of inputs with 36 products per channel pair (F(6x6, 3x3): 64
products for a 6x6 block). Compiled by Numba as the engine's own kernels are (``lapsrn.engine.kernels.kernel``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lapsrn.engine.kernels import f2, f4, f5, f8, kernel, leaky
from lapsrn.engine.winograd import toom_cook

AT, G, BT = toom_cook([0, 1, -1, 2, -2], 4, 3)


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


@kernel
def input_transform(xp, v, u, first, n, tw, slope):
    """v[6i + j, t, c] = (B^T d B)[i, j], d the 6x6 window of LeakyReLU_slope(xp) at tile first + t; u: (6, 6, C)."""
    c_in = xp.shape[2]
    for t in range(n):
        r, q = 4 * ((first + t) // tw), 4 * ((first + t) % tw)
        for b in range(6):
            for c in range(c_in):
                u[0, b, c], u[1, b, c], u[2, b, c], u[3, b, c], u[4, b, c], u[5, b, c] = bt6(
                    leaky(xp[r, q + b, c], slope),
                    leaky(xp[r + 1, q + b, c], slope),
                    leaky(xp[r + 2, q + b, c], slope),
                    leaky(xp[r + 3, q + b, c], slope),
                    leaky(xp[r + 4, q + b, c], slope),
                    leaky(xp[r + 5, q + b, c], slope),
                )
        for i in range(6):
            for c in range(c_in):
                (
                    v[6 * i, t, c],
                    v[6 * i + 1, t, c],
                    v[6 * i + 2, t, c],
                    v[6 * i + 3, t, c],
                    v[6 * i + 4, t, c],
                    v[6 * i + 5, t, c],
                ) = bt6(u[i, 0, c], u[i, 1, c], u[i, 2, c], u[i, 3, c], u[i, 4, c], u[i, 5, c])


@kernel
def output_transform(m, bias, out, skip, use_skip, s, o, first, n, tw, h, w, slope):
    """LeakyReLU_slope((A^T m A) + bias (+ skip)) into tile first + t's 4x4 pixels; s: (4, 6, C), o: (4, C)."""
    c_out = out.shape[2]
    for t in range(n):
        r, q = 4 * ((first + t) // tw), 4 * ((first + t) % tw)
        for j in range(6):
            for k in range(c_out):
                s[0, j, k], s[1, j, k], s[2, j, k], s[3, j, k] = at6(
                    m[j, t, k], m[6 + j, t, k], m[12 + j, t, k], m[18 + j, t, k], m[24 + j, t, k], m[30 + j, t, k]
                )
        for i in range(4):
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


def weights(w: np.ndarray) -> np.ndarray:
    """G w G^T as 36 matrices (Cin x Cout) from weights (Cout, Cin, 3, 3)."""
    c_out, c_in = w.shape[:2]
    u = np.einsum("ia,kcab,jb->ijck", G, w.astype(np.float64), G).reshape(36, c_in, c_out)
    return np.ascontiguousarray(u, np.float32)
