"""Images through a pyramid network the authors' way: Y through the network, Cb/Cr bicubic, quantised.

``super_resolve`` is the single code path shared by ``lapsrn upscale``,
``lapsrn evaluate`` and the Python API, so what you upscale is exactly what
was scored. The network runs in a ``tiling.Tiler`` (an ``Upscaler`` is one).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import protocol as P
from .bands import bands
from .io import to_uint8, to_uint16
from .memory import BAND_PIXELS
from .weights import MAX_LEVELS

if TYPE_CHECKING:
    from .tiling import Tiler


def levels_for(scale: float) -> int:
    """Pyramid levels needed for a scale: the next power of two at or above it."""
    if not math.isfinite(scale) or scale <= 1:
        raise ValueError(f"scale must be a number > 1, got {scale}")
    n = math.ceil(math.log2(scale) - 1e-9)
    if n > MAX_LEVELS:
        raise ValueError(f"scale {scale} is too large (at most {2**MAX_LEVELS})")
    return n


BAND_MARGIN = 6  # LR rows of context for the bicubic kernels at a band's edges (at most 4 needed)
MIN_SPLIT_ROWS = 4 * BAND_MARGIN  # LR rows of a band cut only to give every thread one


def quantize(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """[0, 1] floats to the output sample type: uint8 as MATLAB im2uint8, uint16 alike, floats as they are."""
    if np.dtype(dtype) == np.uint8:
        return to_uint8(img)
    if np.dtype(dtype) == np.uint16:
        return to_uint16(img)
    return img.astype(dtype, copy=False)


def _compose_rows(gray: bool, ycc: np.ndarray, y: np.ndarray, r0: int, r1: int, scale: int, out: np.ndarray) -> None:
    """Output rows of LR rows [r0, r1) into ``out``, from the network's Y for those rows (at the output size).

    Gray comes back from studio range; colour takes Cb/Cr bicubic-upscaled
    and converts BT.601 to RGB. In bands that overlap by BAND_MARGIN LR rows
    and keep only their own rows, so the result equals composing the whole
    image at once (tested) while float64 temporaries stay a few MB. The bands
    run on the engine's threads (NumPy releases the GIL), BAND_PIXELS between
    them all; a band has at least MIN_SPLIT_ROWS rows unless it is the only one,
    so that the margins stay a small part of the work.
    """
    from .engine import map_threads, threads

    h, w = ycc.shape[:2]
    n = max(1, min(threads(), BAND_PIXELS // (w * scale * scale * 8)))  # bands at once: 8 rows each at least
    rows = max(BAND_PIXELS // (w * scale * scale * n), 8)
    rows = min(rows, max(-(-(r1 - r0) // n), MIN_SPLIT_ROWS))  # a band for each thread, if the rows allow

    cut = bands(h, rows, BAND_MARGIN, start=r0, end=r1)

    def compose(i: int) -> None:
        b = cut[i]
        yb = y[(b.start - r0) * scale : (b.stop - r0) * scale]
        if gray:
            px = np.clip((yb - 16 / 255) * (255 / 219), 0.0, 1.0)
        else:
            px = np.empty((*yb.shape, 3))
            px[..., 0] = yb
            chroma = P.imresize(ycc[b.read_start : b.read_stop, :, 1:], scale)  # chroma only
            px[..., 1:] = chroma[b.offset * scale : (b.offset + b.stop - b.start) * scale]
            px = P.ycbcr2rgb(px)
        out[b.start * scale : b.stop * scale] = quantize(px, out.dtype)

    for i in range(0, len(cut), n):  # n bands at a time, so their temporaries stay within BAND_PIXELS
        map_threads(compose, range(i, min(i + n, len(cut))))


def _compose(img: np.ndarray, ycc: np.ndarray, y: np.ndarray, scale: float, dtype=np.float64) -> np.ndarray:
    """The output image from the network's last Y plane, at any scale: Y resized to the output size first
    when the scale is not the network's; a non-integer scale composes in one piece."""
    h, w = img.shape[:2]
    size = (P.output_size(h, scale), P.output_size(w, scale))
    if y.shape != size:
        y = P.imresize(y, size=size)
    if scale == int(scale):
        out = np.empty((*size, *img.shape[2:]), dtype)
        _compose_rows(img.ndim == 2, ycc, y, 0, h, int(scale), out)
        return out
    if img.ndim == 2:
        return quantize(np.clip((y - 16 / 255) * (255 / 219), 0.0, 1.0), dtype)
    out = np.empty((*size, 3))
    out[..., 0] = y
    out[..., 1:] = P.imresize(ycc[..., 1:], scale)
    return quantize(P.ycbcr2rgb(out), dtype)


MIN_SIDE = 8  # LR pixels: a smaller plane runs through the network padded to it by repeating its edges


def _network_planes(upscaler: Tiler, y: np.ndarray, levels: int, last_only: bool = False) -> list[np.ndarray]:
    """The network's Y planes for a whole luminance plane; one under MIN_SIDE on a side runs padded.

    The network pads every conv with zeros, which a picture of a few pixels is mostly made of: a flat
    1x1 colour came out ~10 levels darker. Repeating the plane's last row and column carries its own
    values instead, and each output is cropped back. Only Y is padded: the chroma is the protocol's
    bicubic of the picture as it is.
    """
    h, w = y.shape
    if min(h, w) >= MIN_SIDE:
        return upscaler.pyramid_y(y, levels, last_only)
    padded = np.pad(y, ((0, max(0, MIN_SIDE - h)), (0, max(0, MIN_SIDE - w))), mode="edge")
    first = levels if last_only else 1
    outs = upscaler.pyramid_y(padded, levels, last_only)
    return [o[: h * 2**l, : w * 2**l] for l, o in enumerate(outs, start=first)]


def super_resolve(upscaler: Tiler, img: np.ndarray, scale: float, dtype=np.float64) -> np.ndarray:
    """Upscale float64 HxW (gray) or HxWx3 (RGB) in [0, 1], the authors' way.

    RGB: BT.601 Y through the network; Cb/Cr bicubic-upscaled; back to RGB.
    Gray: treated as RGB with three equal channels (Y = 16/255 + 219/255 g),
    so gray and colour images take the same path. A scale that is not a power
    of two runs to the next level and is resized down bicubically, as the
    official MS-LapSRN code does for x3. Output is clipped to [0, 1] and of
    ``dtype``: float64, or uint8/uint16 quantised band by band. At a power of
    two each band of the network's output goes straight into the output, so
    a large upscale holds the input, the output and the feature maps, no more.
    Runs within the upscaler's thread limits (``Tiler.limits``).
    """
    with upscaler.limits():
        ycc = P.rgb2ycbcr(P.gray_to_rgb(img))
        levels = levels_for(scale)
        h, w = img.shape[:2]
        if scale != 2**levels or min(h, w) < MIN_SIDE:
            return _compose(img, ycc, _network_planes(upscaler, ycc[..., 0], levels, last_only=True)[-1], scale, dtype)
        out = np.empty((h * 2**levels, w * 2**levels, *img.shape[2:]), dtype)
        held = img.nbytes + ycc.nbytes + out.nbytes
        for r0, r1, (y,) in upscaler.bands(ycc[..., 0], levels, last_only=True, reserved=held):
            _compose_rows(img.ndim == 2, ycc, y, r0, r1, 2**levels, out)
        return out


def super_resolve_pyramid(upscaler: Tiler, img: np.ndarray, levels: int, dtype=np.float64) -> list[np.ndarray]:
    """x2, x4, ... x2^levels of one image from a single forward pass, as ``super_resolve`` composes them."""
    with upscaler.limits():
        ycc = P.rgb2ycbcr(P.gray_to_rgb(img))
        ys = _network_planes(upscaler, ycc[..., 0], levels)
        return [_compose(img, ycc, y, 2**l, dtype) for l, y in enumerate(ys, start=1)]


def bicubic(img: np.ndarray, scale: float) -> np.ndarray:
    """The papers' baseline: MATLAB bicubic upscaling of every channel, clipped to [0, 1]."""
    return np.clip(P.imresize(img, scale), 0.0, 1.0)
