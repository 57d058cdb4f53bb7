"""The convolutions by Winograd's minimal filtering, for CPU inference.

Both networks spend almost all their time in 64 -> 64 3x3 convolutions, and a
direct convolution already runs them near this CPU's matmul peak. Winograd's
algorithm (Lavin & Gray, CVPR 2016) computes each 4x4 block of outputs from a
6x6 block of inputs with 36 multiplications per channel pair instead of 144
(F(4x4, 3x3)):

    out_tile = A^T [ (G w G^T) * (B^T d B) ] A

The 36 elementwise products, summed over input channels, are 36 matrix
products (tiles x Cin) @ (Cin x Cout), which PyTorch's BLAS runs; the small
input and output transforms are loops compiled by Numba, run over bands of
tiles so that the transformed data stays in cache. The output transform also
adds the bias, an optional skip (MS-LapSRN's local residual) and the
LeakyReLU; the input transform can apply a LeakyReLU first (MS-LapSRN's
pre-activation), so one layer reads and writes its feature maps once.

The last level's feature upsampler (the released 3x3 stride-2 transposed
conv) is one 2x2 convolution with a group of output channels per output
phase, run by F(4x4, 2x2) with the phases written straight to their pixels;
``upsample_then_residual`` runs it and the residual conv in bands of rows.

Feature maps live here as zero-bordered NHWC arrays (``FeatureMap``), whose
border is the convolution's zero padding, so layers chain without copies.
Results equal ``F.conv2d`` to float32 rounding (about 1e-5 relative per
layer; the tests bound whole networks). Numba is a dependency; without it,
with ``LAPSRN_WINOGRAD=0``, inside ``disabled()``, or while autograd records,
the models run their plain PyTorch convolutions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn


def toom_cook(points: list[float], m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A^T (m x n), G (n x r), B^T (n x n) of Winograd's F(m, r) at these n - 1 points and infinity (n = m + r - 1).

    y = A^T [(G g) * (B^T d)] is the correlation y_i = sum_k d_(i+k) g_k; in 2-D the same matrices
    are applied along rows and columns. The tests check both sets used here against conv2d.
    """
    n = m + r - 1
    p = np.asarray(points, float)
    at, g, bt = np.zeros((m, n)), np.zeros((n, r)), np.zeros((n, n))
    for j in range(n - 1):
        others = np.delete(p, j)
        at[:, j] = p[j] ** np.arange(m)
        g[j] = p[j] ** np.arange(r) / np.prod(p[j] - others)
        bt[j, : n - 1] = np.polynomial.polynomial.polyfromroots(others)
    at[m - 1, n - 1] = g[n - 1, r - 1] = 1
    bt[n - 1] = np.polynomial.polynomial.polyfromroots(p)
    return at, g, bt


# F(4x4, 3x3) for the 3x3 convs: B^T and A^T are hand-expanded in the kernels below (their
# nonzero entries are 1, 2, 4, 5, 8), G is used as a matrix. F(4x4, 2x2) for the feature upsampler.
AT, G, BT = toom_cook([0, 1, -1, 2, -2], 4, 3)
AT2, G2, BT2 = toom_cook([0, 1, -1, 2], 4, 2)
BAND_TILES = 384  # tiles per band: 2 x 36 x 384 x 64 floats = 7 MB of scratch, in cache (measured best of 256-4096)
CHUNK = 8  # tiles per parallel work item in the transforms
_NO_SKIP = np.zeros((1, 1, 1), np.float32)


@cache
def _kernels():
    """Compile (or load from Numba's cache) the transforms of both algorithms; None when Numba is missing."""
    try:
        from numba import njit, prange
    except ImportError:
        return None
    f2, f4, f5, f8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)

    def compiled(fn):
        try:
            return njit(parallel=True, fastmath=True, cache=True)(fn)
        except RuntimeError:  # no writable folder for Numba's cache: compile at every start instead
            return njit(parallel=True, fastmath=True)(fn)

    @compiled
    def input_transform(xp, v, first, n, tw, slope):
        """v[6i + j, t, c] = (B^T d B)[i, j], d the 6x6 window of LeakyReLU_slope(xp) at tile first + t."""
        c_in = xp.shape[2]
        for chunk in prange((n + CHUNK - 1) // CHUNK):
            u = np.empty((6, 6, c_in), np.float32)
            for t in range(chunk * CHUNK, min(n, chunk * CHUNK + CHUNK)):
                r, q = 4 * ((first + t) // tw), 4 * ((first + t) % tw)
                for b in range(6):  # columns of the window: B^T along the rows
                    for c in range(c_in):
                        d0, d1, d2 = xp[r, q + b, c], xp[r + 1, q + b, c], xp[r + 2, q + b, c]
                        d3, d4, d5 = xp[r + 3, q + b, c], xp[r + 4, q + b, c], xp[r + 5, q + b, c]
                        d0 = d0 if d0 > 0 else d0 * slope
                        d1 = d1 if d1 > 0 else d1 * slope
                        d2 = d2 if d2 > 0 else d2 * slope
                        d3 = d3 if d3 > 0 else d3 * slope
                        d4 = d4 if d4 > 0 else d4 * slope
                        d5 = d5 if d5 > 0 else d5 * slope
                        u[0, b, c] = f4 * d0 - f5 * d2 + d4
                        u[1, b, c] = -f4 * (d1 + d2) + d3 + d4
                        u[2, b, c] = f4 * (d1 - d2) - d3 + d4
                        u[3, b, c] = -f2 * (d1 - d3) - d2 + d4
                        u[4, b, c] = f2 * (d1 - d3) - d2 + d4
                        u[5, b, c] = f4 * d1 - f5 * d3 + d5
                for i in range(6):  # then along the columns
                    for c in range(c_in):
                        d0, d1, d2, d3, d4, d5 = u[i, 0, c], u[i, 1, c], u[i, 2, c], u[i, 3, c], u[i, 4, c], u[i, 5, c]
                        v[6 * i, t, c] = f4 * d0 - f5 * d2 + d4
                        v[6 * i + 1, t, c] = -f4 * (d1 + d2) + d3 + d4
                        v[6 * i + 2, t, c] = f4 * (d1 - d2) - d3 + d4
                        v[6 * i + 3, t, c] = -f2 * (d1 - d3) - d2 + d4
                        v[6 * i + 4, t, c] = f2 * (d1 - d3) - d2 + d4
                        v[6 * i + 5, t, c] = f4 * d1 - f5 * d3 + d5

    @compiled
    def output_transform(m, bias, out, skip, use_skip, first, n, tw, h, w, slope):
        """LeakyReLU_slope((A^T m A) + bias (+ skip)) into tile first + t's 4x4 pixels of out (within h x w)."""
        c_out = out.shape[2]
        for chunk in prange((n + CHUNK - 1) // CHUNK):
            s = np.empty((4, 6, c_out), np.float32)
            o = np.empty((4, c_out), np.float32)
            for t in range(chunk * CHUNK, min(n, chunk * CHUNK + CHUNK)):
                r, q = 4 * ((first + t) // tw), 4 * ((first + t) % tw)
                for j in range(6):  # A^T along the rows
                    for k in range(c_out):
                        m0, m1, m2 = m[j, t, k], m[6 + j, t, k], m[12 + j, t, k]
                        m3, m4, m5 = m[18 + j, t, k], m[24 + j, t, k], m[30 + j, t, k]
                        s[0, j, k] = m0 + m1 + m2 + m3 + m4
                        s[1, j, k] = (m1 - m2) + f2 * (m3 - m4)
                        s[2, j, k] = (m1 + m2) + f4 * (m3 + m4)
                        s[3, j, k] = (m1 - m2) + f8 * (m3 - m4) + m5
                for i in range(4):  # then along the columns, one output row at a time
                    if r + i >= h:
                        break
                    for k in range(c_out):
                        m0, m1, m2, m3, m4, m5 = s[i, 0, k], s[i, 1, k], s[i, 2, k], s[i, 3, k], s[i, 4, k], s[i, 5, k]
                        o[0, k] = m0 + m1 + m2 + m3 + m4 + bias[k]
                        o[1, k] = (m1 - m2) + f2 * (m3 - m4) + bias[k]
                        o[2, k] = (m1 + m2) + f4 * (m3 + m4) + bias[k]
                        o[3, k] = (m1 - m2) + f8 * (m3 - m4) + m5 + bias[k]
                    for j in range(4):
                        if q + j < w:
                            for k in range(c_out):
                                x = o[j, k] + skip[1 + r + i, 1 + q + j, k] if use_skip else o[j, k]
                                out[1 + r + i, 1 + q + j, k] = x if x > 0 else x * slope

    @compiled
    def upsample_input_transform(xp, v, first, n, tw, bt):
        """v[5i + j, t, c] = (B^T d B)[i, j], d the 5x5 window of xp at tile first + t (F(4x4, 2x2))."""
        c_in = xp.shape[2]
        for chunk in prange((n + CHUNK - 1) // CHUNK):
            u = np.empty((5, 5, c_in), np.float32)
            for t in range(chunk * CHUNK, min(n, chunk * CHUNK + CHUNK)):
                r, q = 4 * ((first + t) // tw), 4 * ((first + t) % tw)
                u[:] = 0
                for i in range(5):
                    for a in range(5):
                        if bt[i, a] != 0:
                            for b in range(5):
                                for c in range(c_in):
                                    u[i, b, c] += bt[i, a] * xp[r + a, q + b, c]
                for i in range(5):
                    for j in range(5):
                        for c in range(c_in):
                            v[5 * i + j, t, c] = 0
                        for b in range(5):
                            if bt[j, b] != 0:
                                for c in range(c_in):
                                    v[5 * i + j, t, c] += bt[j, b] * u[i, b, c]

    @compiled
    def upsample_output_transform(m, bias, out, first, n, tw, h, w, at, slope):
        """Output channel (2a + b) * C + k of tile pixel (i, j) -> out[1 + 2(4ti + i) + a, 1 + 2(4tj + j) + b, k]."""
        c_out = out.shape[2]
        for chunk in prange((n + CHUNK - 1) // CHUNK):
            s = np.empty((4, 5, 4 * c_out), np.float32)
            o = np.empty(c_out, np.float32)
            for t in range(chunk * CHUNK, min(n, chunk * CHUNK + CHUNK)):
                r, q = 4 * ((first + t) // tw), 4 * ((first + t) % tw)
                s[:] = 0
                for i in range(4):
                    for p in range(5):
                        if at[i, p] != 0:
                            for j in range(5):
                                for k in range(4 * c_out):
                                    s[i, j, k] += at[i, p] * m[5 * p + j, t, k]
                for i in range(4):
                    if r + i >= h:
                        break
                    for j in range(4):
                        if q + j >= w:
                            break
                        for ab in range(4):
                            y, x = 1 + 2 * (r + i) + ab // 2, 1 + 2 * (q + j) + ab % 2
                            o[:] = bias
                            for p in range(5):
                                if at[j, p] != 0:
                                    for k in range(c_out):
                                        o[k] += at[j, p] * s[i, p, ab * c_out + k]
                            for k in range(c_out):
                                out[y, x, k] = o[k] if o[k] > 0 else o[k] * slope

    return input_transform, output_transform, upsample_input_transform, upsample_output_transform


_switched_off = 0  # depth of nested ``disabled()`` blocks


def enabled() -> bool:
    """Whether the Winograd path may run: Numba importable, not switched off by LAPSRN_WINOGRAD=0 or ``disabled()``."""
    return not _switched_off and os.environ.get("LAPSRN_WINOGRAD", "1") != "0" and _kernels() is not None


@contextmanager
def disabled() -> Iterator[None]:
    """Plain PyTorch convolutions inside: for counting a direct convolution's FLOPs with hooks, or comparing."""
    global _switched_off
    _switched_off += 1
    try:
        yield
    finally:
        _switched_off -= 1


def usable(x: torch.Tensor) -> bool:
    """Whether a feature map can take the Winograd path: CPU float32 inference on one image."""
    return (
        x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.shape[0] == 1
        and not torch.is_grad_enabled() and not torch.onnx.is_in_onnx_export() and enabled()
    )


@dataclass
class FeatureMap:
    """An h x w x c map inside a zero border: one pixel at top/left, enough at bottom/right for whole 4x4 tiles."""

    data: np.ndarray  # (4 * ceil(h / 4) + 2, 4 * ceil(w / 4) + 2, c) float32
    h: int
    w: int

    @classmethod
    def empty(cls, h: int, w: int, c: int) -> FeatureMap:
        """Uninitialised inside, zero border."""
        data = np.empty((4 * -(-h // 4) + 2, 4 * -(-w // 4) + 2, c), np.float32)
        data[0], data[h + 1 :], data[:, 0], data[:, w + 1 :] = 0, 0, 0, 0
        return cls(data, h, w)

    @classmethod
    def from_tensor(cls, x: torch.Tensor) -> FeatureMap:
        """From a (1, c, h, w) tensor."""
        _, c, h, w = x.shape
        fm = cls.empty(h, w, c)
        fm.data[1 : h + 1, 1 : w + 1] = x[0].permute(1, 2, 0).numpy()
        return fm

    def to_tensor(self) -> torch.Tensor:
        """A (1, c, h, w) channels-last tensor, the layout the other layers run fastest in."""
        inside = torch.from_numpy(self.data[1 : self.h + 1, 1 : self.w + 1])
        return inside.permute(2, 0, 1)[None].contiguous(memory_format=torch.channels_last)


def _use_torch_threads() -> None:
    """Numba's transforms use as many threads as PyTorch's BLAS (``torch.set_num_threads``)."""
    from numba import config, set_num_threads

    set_num_threads(max(1, min(torch.get_num_threads(), config.NUMBA_NUM_THREADS)))


def _cached(module: nn.Module, compute) -> torch.Tensor:
    """compute(weight) stored on the module until its weight changes (storage or in-place version)."""
    key = (module.weight.data_ptr(), module.weight._version)
    cached = getattr(module, "_winograd_weights", None)
    if cached is None or cached[0] != key:
        cached = key, compute(module.weight.detach().double()).float().contiguous()
        module._winograd_weights = cached
    return cached[1]


def _bias(module: nn.Module, channels: int) -> np.ndarray:
    return module.bias.detach().numpy() if module.bias is not None else np.zeros(channels, np.float32)


def _run_bands(x: FeatureMap, u: torch.Tensor, transform_in, transform_out) -> None:
    """For each band of BAND_TILES tiles: transform_in(v, first, n), v @ u into m in place, transform_out(m, first, n).

    u: (positions, Cin, Cout); v and m are contiguous views of one scratch buffer each, so bmm writes in place.
    """
    _use_torch_threads()
    positions, c_in, c_out = u.shape
    tiles = -(-x.h // 4) * -(-x.w // 4)
    v_flat = torch.empty(positions * min(BAND_TILES, tiles) * c_in)
    m_flat = torch.empty(positions * min(BAND_TILES, tiles) * c_out)
    for first in range(0, tiles, BAND_TILES):
        n = min(BAND_TILES, tiles - first)
        v = v_flat[: positions * n * c_in].view(positions, n, c_in)
        m = m_flat[: positions * n * c_out].view(positions, n, c_out)
        transform_in(v.numpy(), first, n)
        torch.bmm(v, u, out=m)
        transform_out(m.numpy(), first, n)


def transformed_weights(conv: nn.Conv2d) -> torch.Tensor:
    """G w G^T for each (out, in) pair, as 36 matrices (in x out); computed in float64, cached until w changes."""
    g = torch.from_numpy(G)
    return _cached(conv, lambda w: torch.einsum("ia,kcab,jb->ijck", g, w, g).reshape(36, conv.in_channels, conv.out_channels))


def conv3x3(
    x: FeatureMap, conv: nn.Conv2d, pre: float = 1.0, post: float = 1.0,
    skip: FeatureMap | None = None, out: FeatureMap | None = None,
) -> FeatureMap:
    """post_act(conv(pre_act(x)) + skip), where *_act is LeakyReLU with that slope (1.0: none).

    ``out``: a map of the right size to write into (not x or skip), so a chain of layers reuses two buffers.
    """
    input_transform, output_transform = _kernels()[:2]
    h, w, tw = x.h, x.w, -(-x.w // 4)
    if out is None:
        out = FeatureMap.empty(h, w, conv.out_channels)
    bias = _bias(conv, conv.out_channels)
    skip_data = skip.data if skip is not None else _NO_SKIP
    pre32, post32 = np.float32(pre), np.float32(post)
    _run_bands(
        x, transformed_weights(conv),
        lambda v, first, n: input_transform(x.data, v, first, n, tw, pre32),
        lambda m, first, n: output_transform(m, bias, out.data, skip_data, skip is not None, first, n, tw, h, w, post32),
    )
    return out


UPSAMPLE_TAPS = ((2, 0), (None, 1))  # output phase a -> transposed-conv tap applied to input row m - 1, row m


def upsample_weights(deconv: nn.ConvTranspose2d) -> torch.Tensor:
    """The 3x3 stride-2 transposed conv, cropped, as one 2x2 conv with 4 x Cout outputs (a channel group per
    output phase, see ``models.phase_weights``), then G k G^T: 25 matrices (Cin x 4 Cout). Cached until w changes."""

    def compute(w: torch.Tensor) -> torch.Tensor:  # w: (Cin, Cout, 3, 3)
        c_in, c_out = w.shape[:2]
        k = torch.zeros(2, 2, c_out, c_in, 2, 2, dtype=torch.float64)  # phase a, b, out, in, window row, col
        for a in range(2):
            for b in range(2):
                for i, ti in enumerate(UPSAMPLE_TAPS[a]):
                    for j, tj in enumerate(UPSAMPLE_TAPS[b]):
                        if ti is not None and tj is not None:
                            k[a, b, :, :, i, j] = w[:, :, ti, tj].t()
        g = torch.from_numpy(G2)
        return torch.einsum("ia,pkcab,jb->ijcpk", g, k.reshape(4, c_out, c_in, 2, 2), g).reshape(25, c_in, 4 * c_out)

    return _cached(deconv, compute)


def upsample2x(x: FeatureMap, deconv: nn.ConvTranspose2d, post: float = 1.0) -> FeatureMap:
    """post_act(the released x2 feature upsampler), by Winograd F(4x4, 2x2): a 2h x 2w map."""
    upsample_input_transform, upsample_output_transform = _kernels()[2:]
    h, w, tw = x.h, x.w, -(-x.w // 4)
    out = FeatureMap.empty(2 * h, 2 * w, deconv.out_channels)
    bias = _bias(deconv, deconv.out_channels)
    bt, at, post32 = BT2.astype(np.float32), AT2.astype(np.float32), np.float32(post)
    _run_bands(
        x, upsample_weights(deconv),
        lambda v, first, n: upsample_input_transform(x.data, v, first, n, tw, bt),
        lambda m, first, n: upsample_output_transform(m, bias, out.data, first, n, tw, h, w, at, post32),
    )
    return out


def upsample_then_residual(x: torch.Tensor, deconv: nn.ConvTranspose2d, post: float, residual: nn.Conv2d,
                           band_bytes: int) -> torch.Tensor:
    """residual(post_act(upsample(x))) of the last level, in bands of rows, as ``models.upsample_then_residual``.

    Each band of tile rows is upsampled with one tile row (4 input rows) of context above and below,
    then the residual conv (F(4x4, 3x3) too) runs on it; the context rows are dropped, so the seams
    do not show. ``band_bytes`` bounds one band's upsampled map.
    """
    fm = FeatureMap.from_tensor(x)
    h, w, c_out = fm.h, fm.w, deconv.out_channels
    th = -(-h // 4)
    band = max(1, band_bytes // (8 * (2 * w + 2) * c_out * 4))  # tile rows per band
    out = torch.empty(1, 1, 2 * h, 2 * w)
    for t0 in range(0, th, band):
        t1 = min(t0 + band, th)
        a0, a1 = max(t0 - 1, 0), min(t1 + 1, th)
        rows = FeatureMap(fm.data[4 * a0 : 4 * a1 + 2], min(h, 4 * a1) - 4 * a0, w)  # its border row: real context
        res = conv3x3(upsample2x(rows, deconv, post), residual).data  # zero-bordered, one channel
        r0, r1 = 8 * t0, min(8 * t1, 2 * h)
        out[0, 0, r0:r1] = torch.from_numpy(res[1 + r0 - 8 * a0 : 1 + r1 - 8 * a0, 1 : 2 * w + 1, 0])
    return out

