"""Images through a pyramid network the authors' way: Y through the network, Cb/Cr bicubic, quantised.

``super_resolve`` is the single code path shared by ``lapsrn upscale``,
``lapsrn evaluate`` and the Python API, so what you upscale is exactly what
was scored. The network runs in an ``inference.Upscaler``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import protocol as P
from .weights import MAX_LEVELS

if TYPE_CHECKING:
    from .inference import Upscaler


def levels_for(scale: float) -> int:
    """Pyramid levels needed for a scale: the next power of two at or above it."""
    if not math.isfinite(scale) or scale <= 1:
        raise ValueError(f"scale must be a number > 1, got {scale}")
    n = math.ceil(math.log2(scale) - 1e-9)
    if n > MAX_LEVELS:
        raise ValueError(f"scale {scale} is too large (at most {2**MAX_LEVELS})")
    return n


BAND_PIXELS = 1 << 20  # output pixels composed at once, all threads together: float64 temporaries ~50 MB
BAND_MARGIN = 6  # LR rows of context for the bicubic kernels at a band's edges (at most 4 needed)
MIN_SPLIT_ROWS = 4 * BAND_MARGIN  # LR rows of a band cut only to give every thread one


def quantize(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """[0, 1] floats to the output sample type: uint8 as MATLAB im2uint8, uint16 alike, floats as they are."""
    from .io import to_uint8, to_uint16

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

    def band(b0: int) -> None:
        b1 = min(b0 + rows, r1)
        yb = y[(b0 - r0) * scale : (b1 - r0) * scale]
        if gray:
            px = np.clip((yb - 16 / 255) * (255 / 219), 0.0, 1.0)
        else:
            a0, a1 = max(b0 - BAND_MARGIN, 0), min(b1 + BAND_MARGIN, h)
            px = np.empty((*yb.shape, 3))
            px[..., 0] = yb
            px[..., 1:] = P.imresize(ycc[a0:a1, :, 1:], scale)[(b0 - a0) * scale : (b1 - a0) * scale]  # chroma only
            px = P.ycbcr2rgb(px)
        out[b0 * scale : b1 * scale] = quantize(px, out.dtype)

    starts = range(r0, r1, rows)
    for i in range(0, len(starts), n):  # n bands at a time, so their temporaries stay within BAND_PIXELS
        map_threads(band, starts[i : i + n])


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


MIN_SIDE = 8  # LR pixels: a smaller image is padded to it by repeating its last row and column


def _pad_tiny(img: np.ndarray) -> np.ndarray:
    """An image under MIN_SIDE on a side, padded at its bottom and right by repeating its edge pixels.

    The network pads every conv with zeros, which a picture of a few pixels is mostly made of: a flat
    1x1 colour came out ~10 levels darker. Repeated edges carry the picture's own values instead; the
    output's top-left part is then cropped. The bicubic chroma is unchanged by it, since MATLAB's
    ``imresize`` repeats edge pixels itself, and images of MIN_SIDE and more are never padded.
    """
    h, w = img.shape[:2]
    pad = ((0, max(0, MIN_SIDE - h)), (0, max(0, MIN_SIDE - w))) + ((0, 0),) * (img.ndim - 2)
    return np.pad(img, pad, mode="edge")


def super_resolve(upscaler: Upscaler, img: np.ndarray, scale: float, dtype=np.float64) -> np.ndarray:
    """Upscale float64 HxW (gray) or HxWx3 (RGB) in [0, 1], the authors' way.

    RGB: BT.601 Y through the network; Cb/Cr bicubic-upscaled; back to RGB.
    Gray: treated as RGB with three equal channels (Y = 16/255 + 219/255 g),
    so gray and colour images take the same path. A scale that is not a power
    of two runs to the next level and is resized down bicubically, as the
    official MS-LapSRN code does for x3. Output is clipped to [0, 1] and of
    ``dtype``: float64, or uint8/uint16 quantised band by band. At a power of
    two each band of the network's output goes straight into the output, so
    a large upscale holds the input, the output and the feature maps, no more.
    A picture under MIN_SIDE pixels on a side runs padded (``_pad_tiny``).
    """
    if min(img.shape[:2]) < MIN_SIDE:
        out = super_resolve(upscaler, _pad_tiny(img), scale, dtype)
        return out[: P.output_size(img.shape[0], scale), : P.output_size(img.shape[1], scale)]
    ycc = P.rgb2ycbcr(P.gray_to_rgb(img))
    levels = levels_for(scale)
    if scale != 2**levels:
        return _compose(img, ycc, upscaler.pyramid_y(ycc[..., 0], levels, last_only=True)[-1], scale, dtype)
    h, w = img.shape[:2]
    out = np.empty((h * 2**levels, w * 2**levels, *img.shape[2:]), dtype)
    held = img.nbytes + ycc.nbytes + out.nbytes
    for r0, r1, (y,) in upscaler.bands(ycc[..., 0], levels, last_only=True, reserved=held):
        _compose_rows(img.ndim == 2, ycc, y, r0, r1, 2**levels, out)
    return out


def super_resolve_pyramid(upscaler: Upscaler, img: np.ndarray, levels: int, dtype=np.float64) -> list[np.ndarray]:
    """x2, x4, ... x2^levels of one image from a single forward pass (a tiny one padded, as ``super_resolve``)."""
    if min(img.shape[:2]) < MIN_SIDE:
        outs = super_resolve_pyramid(upscaler, _pad_tiny(img), levels, dtype)
        return [o[: img.shape[0] * 2**l, : img.shape[1] * 2**l] for l, o in enumerate(outs, start=1)]
    ycc = P.rgb2ycbcr(P.gray_to_rgb(img))
    ys = upscaler.pyramid_y(ycc[..., 0], levels)
    return [_compose(img, ycc, y, 2**l, dtype) for l, y in enumerate(ys, start=1)]


def bicubic(img: np.ndarray, scale: float) -> np.ndarray:
    """The papers' baseline: MATLAB bicubic upscaling of every channel, clipped to [0, 1]."""
    return np.clip(P.imresize(img, scale), 0.0, 1.0)
