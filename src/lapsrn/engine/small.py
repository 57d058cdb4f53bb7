"""The engine's operations in NumPy alone, for small images.

On a small image the Numba path's fixed costs dominate: importing Numba and
loading its compiled kernels take longer than the whole network does as plain
matrix products. So here the 64-channel convs are Winograd's F(4x4, 3x3) too,
but each transform is one matrix product with a Kronecker matrix (the 6x6
windows gathered by a strided copy), and every product runs on BLAS's own
threads. On a 64x64 image at x4 this takes about twice the loaded Numba path's
time and half an im2col convolution's (docs/results/speed_candidates.md),
without compiling anything. The feature upsampler, the residual conv (64 -> 1) and the image
branch are direct. These functions have the signatures of their ``winograd``
counterparts and compute the same numbers (``tests/test_engine.py``);
``network.Network`` picks this module when the largest feature map is small.
"""

from __future__ import annotations

import threading

import numpy as np

from .winograd import AT, BT, TAPS, Conv, FeatureMap, Upsampler

_BB = np.kron(BT, BT).astype(np.float32)  # (36, 36): B^T d B of a 6x6 window flattened row by row
_AA = np.kron(AT, AT).astype(np.float32)  # (16, 36): A^T m A likewise

_scratch = threading.local()  # per calling thread: (role, shape) -> work array, so threads never share one


def release() -> None:
    """Free this thread's work arrays: they serve one pass, and are dead weight once bigger images go to Numba."""
    _scratch.__dict__.pop("arrays", None)


def _buffer(role: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 work array reused from call to call, one set per thread: a 128x128 map's gathered windows
    take 9 MB, and a fresh array per layer costs a page fault per 4 kB."""
    arrays = _scratch.__dict__.setdefault("arrays", {})
    if (role, shape) not in arrays:
        arrays[role, shape] = np.empty(shape, np.float32)
    return arrays[role, shape]


def _leaky(x: np.ndarray, slope: float, out: np.ndarray | None = None) -> np.ndarray:
    """LeakyReLU as max(x, slope x) (slope in [0, 1]; 1 = identity), into ``out`` when given (no new array)."""
    if slope == 1.0 and out is None:
        return x
    if slope == 1.0:
        out[...] = x
        return out
    return np.maximum(x, np.multiply(x, np.float32(slope), out=out), out=out)


def _winograd(src: np.ndarray, conv: Conv, h: int, w: int) -> np.ndarray:
    """conv(src) + bias by F(4x4, 3x3) as three matrix products, all in NumPy: the 6x6 windows, gathered as
    (36, tiles x Cin), times B^T (x) B^T; the 36 products with G w G^T; the result times A^T (x) A^T."""
    th, tw, cin, cout = -(-h // 4), -(-w // 4), src.shape[2], conv.u.shape[2]
    s0, s1, s2 = src.strides
    windows = np.lib.stride_tricks.as_strided(src, (6, 6, th, tw, cin), (s0, s1, 4 * s0, 4 * s1, s2))
    d = _buffer("windows", (36, th * tw * cin))
    d.reshape(6, 6, th, tw, cin)[...] = windows
    v = np.matmul(_BB, d, out=_buffer("transformed", d.shape)).reshape(36, th * tw, cin)
    m = np.matmul(v, conv.u, out=_buffer("products", (36, th * tw, cout)))
    t = np.matmul(_AA, m.reshape(36, -1), out=_buffer("tiles", (16, th * tw * cout)))
    y = _buffer("product", (th, 4, tw, 4, cout))
    y[...] = t.reshape(4, 4, th, tw, cout).transpose(2, 0, 3, 1, 4)
    y = y.reshape(4 * th, 4 * tw, cout)[:h, :w]
    y += conv.bias
    return y


def conv3x3(
    x: FeatureMap,
    conv: Conv,
    pre: float = 1.0,
    post: float = 1.0,
    skip: FeatureMap | None = None,
    out: FeatureMap | None = None,
) -> FeatureMap:
    """post_act(conv(pre_act(x)) + skip): by Winograd's F(4x4, 3x3) in matrix products (``_winograd``); for a
    conv with few outputs (the residual conv, 64 -> 1), each pixel's nine tap products at once (Cin x 9 Cout),
    then summed from the nine shifted positions."""
    h, w, cin, cout = x.h, x.w, conv.w.shape[1], conv.w.shape[0]
    few = 9 * cout <= cin
    src = x.data[: h + 2, : w + 2] if few else x.data  # Winograd reads whole tiles, into the zero border
    if pre != 1.0:
        src = _leaky(src, pre, out=_buffer("activated", src.shape))
    if few:  # shift the nine products, not the input
        taps = np.matmul(src, conv.w.transpose(1, 2, 3, 0).reshape(cin, 9 * cout))  # (h + 2, w + 2, 9 Cout)
        y = _buffer("product", (h * w, cout)).reshape(h, w, cout)
        y[...] = conv.bias
        for k in range(9):
            y += taps[k // 3 : k // 3 + h, k % 3 : k % 3 + w, k * cout : (k + 1) * cout]
    else:
        y = _winograd(src, conv, h, w)
    if skip is not None:
        y += skip.inside
    out = FeatureMap.empty(h, w, cout) if out is None else out
    _leaky(y, post, out=out.inside)
    return out


def upsample2x(x: FeatureMap, up: Upsampler, post: float = 1.0) -> FeatureMap:
    """post_act(the released x2 feature upsampler), phase by phase: output (2m + a, 2n + b) sums input
    rows m - 1, m (a = 0; taps 2, 0) or m (a = 1; tap 1), and the same for columns (``TAPS``)."""
    h, w = x.h, x.w
    out = FeatureMap.empty(2 * h, 2 * w, up.w.shape[1])
    for a in range(2):
        for b in range(2):
            y = np.broadcast_to(up.bias, (h, w, up.bias.shape[0])).copy()
            for i, ti in enumerate(TAPS[a]):
                for j, tj in enumerate(TAPS[b]):
                    if ti is not None and tj is not None:  # x.data[m + i] is input row m - 1 + i
                        y += x.data[i : i + h, j : j + w] @ up.w[:, :, ti, tj]
            out.data[1 + a : 1 + 2 * h : 2, 1 + b : 1 + 2 * w : 2] = _leaky(y, post)
    return out


def add_upsample_residual(
    x: FeatureMap, up: Upsampler, post: float, residual: Conv, out: np.ndarray, band_bytes: int
) -> None:
    """out += residual(post_act(upsample(x))), in one piece: a small image needs no bands."""
    out += conv3x3(upsample2x(x, up, post), residual).inside[..., 0]


def image_upsample(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """ConvTranspose2d(1, 1, 4, stride 2, padding 1): output row 2m reads input rows m (tap 1) and m - 1
    (tap 3), row 2m + 1 reads rows m + 1 (tap 0) and m (tap 2); the same along columns."""
    h, w = x.shape
    xp = np.pad(x.astype(np.float32), 1)  # xp[r + 1] is input row r; the pad is the zero outside
    taps = (((0, 1), (-1, 3)), ((1, 0), (0, 2)))  # phase -> (row offset, kernel tap) pairs
    out = np.zeros((2 * h, 2 * w), np.float32)
    for a in range(2):
        for b in range(2):
            for dr, kr in taps[a]:
                for dc, kc in taps[b]:
                    out[a::2, b::2] += xp[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] * k[kr, kc]
    return out
