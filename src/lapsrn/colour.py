"""Images through a pyramid network the authors' way: Y through the network, Cb/Cr bicubic, quantised.

``super_resolve`` is the single code path shared by ``lapsrn upscale``,
``lapsrn evaluate`` and the Python API, so what you upscale is exactly what
was scored. The network runs in a ``tiling.Tiler`` (an ``Upscaler`` is one).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from . import protocol as P
from .bands import bands
from .io import to_float, to_uint8, to_uint16
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


def floats(samples: np.ndarray) -> np.ndarray:
    """Float64 [0, 1] from a picture's samples: floats as they are, 8/16-bit integers scaled (``io.to_float``).

    Pictures read from files keep their 8- or 16-bit samples (a quarter or less of float64's bytes) and
    are converted a band of rows at a time; the values are the ones a whole-image conversion gives.
    """
    return samples if samples.dtype == np.float64 else to_float(samples)[0]


def luma(rgb: np.ndarray) -> np.ndarray:
    """The BT.601 Y plane the network reads, float32, converted BAND_PIXELS at a time (no float64 copy of
    the picture is ever whole)."""
    h, w = rgb.shape[:2]
    y = np.empty((h, w), np.float32)
    rows = max(1, BAND_PIXELS // w)
    for r in range(0, h, rows):
        y[r : r + rows] = P.rgb2ycbcr(P.gray_to_rgb(floats(rgb[r : r + rows])))[..., 0]
    return y


def resize_rows(plane: np.ndarray, r0: int, r1: int, scale: int) -> np.ndarray:
    """Bicubic (the protocol's) output rows of LR rows [r0, r1), float64: read with BAND_MARGIN rows of context
    either side, which equals those rows of the whole plane resized (tested)."""
    (b,) = bands(plane.shape[0], r1 - r0, BAND_MARGIN, start=r0, end=r1)
    return P.imresize(floats(plane[b.read_start : b.read_stop]), scale)[b.offset * scale : (b.offset + r1 - r0) * scale]


def bicubic_bands(plane: np.ndarray, scale: int, dtype: type) -> np.ndarray:
    """A whole plane (HxW or HxWxC) resized bicubically at an integer scale, clipped and quantised, a band of
    rows at a time (``resize_rows``): no float64 array of the output's size is made."""
    h, w = plane.shape[:2]
    out = np.empty((h * scale, w * scale, *plane.shape[2:]), dtype)
    rows = max(1, BAND_PIXELS // (w * scale * scale))
    for r in range(0, h, rows):
        r1 = min(r + rows, h)
        out[r * scale : r1 * scale] = quantize(np.clip(resize_rows(plane, r, r1, scale), 0.0, 1.0), dtype)
    return out


def _compose_rows(rgb: np.ndarray, y: np.ndarray, r0: int, r1: int, scale: int, out: np.ndarray) -> None:
    """The output rows of LR rows [r0, r1) into ``out`` (those rows only), from the network's Y for them.

    Gray comes back from studio range; colour takes Cb/Cr bicubic-upscaled
    and converts BT.601 to RGB. In bands whose chroma reads BAND_MARGIN LR rows
    of context (``resize_rows``), so the result equals composing the whole
    image at once (tested) while float64 temporaries stay a few MB. The bands
    run on the engine's threads (NumPy releases the GIL), BAND_PIXELS between
    them all; a band has at least MIN_SPLIT_ROWS rows unless it is the only one,
    so that the margins stay a small part of the work.
    """
    from .engine import map_threads, threads

    h, w = rgb.shape[:2]
    n = max(1, min(threads(), BAND_PIXELS // (w * scale * scale * 8)))  # bands at once: 8 rows each at least
    rows = max(BAND_PIXELS // (w * scale * scale * n), 8)
    rows = min(rows, max(-(-(r1 - r0) // n), MIN_SPLIT_ROWS))  # a band for each thread, if the rows allow
    cut = bands(h, rows, start=r0, end=r1)

    def compose(i: int) -> None:
        b = cut[i]
        yb = y[(b.start - r0) * scale : (b.stop - r0) * scale]
        if rgb.ndim == 2:
            px = np.clip((yb - 16 / 255) * (255 / 219), 0.0, 1.0)
        else:
            (c,) = bands(h, b.stop - b.start, BAND_MARGIN, start=b.start, end=b.stop)
            chroma = P.rgb2ycbcr(floats(rgb[c.read_start : c.read_stop]))[..., 1:]
            px = np.empty((*yb.shape, 3))
            px[..., 0] = yb
            px[..., 1:] = P.imresize(chroma, scale)[c.offset * scale : (c.offset + c.stop - c.start) * scale]
            px = P.ycbcr2rgb(px)
        out[(b.start - r0) * scale : (b.stop - r0) * scale] = quantize(px, out.dtype)

    for i in range(0, len(cut), n):  # n bands at a time, so their temporaries stay within BAND_PIXELS
        map_threads(compose, range(i, min(i + n, len(cut))))


def _compose(img: np.ndarray, y: np.ndarray, scale: float, dtype=np.float64) -> np.ndarray:
    """The output image from the network's last Y plane, at any scale: Y resized to the output size first
    when the scale is not the network's; a non-integer scale composes in one piece."""
    h, w = img.shape[:2]
    size = (P.output_size(h, scale), P.output_size(w, scale))
    if y.shape != size:
        y = P.imresize(y, size=size)
    if scale == int(scale):
        out = np.empty((*size, *img.shape[2:]), dtype)
        _compose_rows(img, y, 0, h, int(scale), out)
        return out
    if img.ndim == 2:
        return quantize(np.clip((y - 16 / 255) * (255 / 219), 0.0, 1.0), dtype)
    out = np.empty((*size, 3))
    out[..., 0] = y
    out[..., 1:] = P.imresize(P.rgb2ycbcr(floats(img))[..., 1:], scale)
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


def output_strips(
    upscaler: Tiler, rgb: np.ndarray, scale: int, dtype=np.uint8, reserved: int = 0, out: np.ndarray | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(first output row, rows) of the picture at an integer ``scale``, top to bottom, a band of the network's
    rows at a time.

    What a large upscale writes as it goes (``pictures``): only the input samples, their Y plane and
    one band of output rows exist at once, so the output need never be whole. A scale that is not a
    power of two runs the network to the next one and resizes its Y down band by band (``_resized_bands``).
    ``reserved``: bytes the caller holds beside these (the input, an alpha plane); each band's rows are
    counted as the tiler sizes its tiles. With ``out`` (the whole output) the rows are composed into it instead.
    """
    with upscaler.limits():
        h, w = rgb.shape[:2]
        levels = levels_for(scale)
        y = luma(rgb)
        row_bytes = 0 if out is not None else w * scale * scale * np.dtype(dtype).itemsize * (3 if rgb.ndim == 3 else 1)
        held = reserved + y.nbytes + (0 if out is None else out.nbytes)
        ys = upscaler.bands(y, levels, last_only=True, reserved=held, row_bytes=row_bytes)
        if scale != 2**levels:
            ys = _resized_bands(ys, h, w, 2**levels, scale)
        for r0, r1, (yo,) in ys:
            rows = (
                np.empty(((r1 - r0) * scale, w * scale, *rgb.shape[2:]), dtype)
                if out is None
                else out[r0 * scale : r1 * scale]
            )
            _compose_rows(rgb, yo, r0, r1, scale, rows)
            del yo  # neither this band's Y nor its rows stay alive while the next band runs
            yield r0 * scale, rows
            del rows


def _resized_bands(
    ys: Iterator[tuple[int, int, list[np.ndarray]]], h: int, w: int, big: int, scale: int
) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Bands (LR rows r0, r1, [their Y at x``big``]), top to bottom, turned into bands of Y at x``scale``: the
    protocol's bicubic resize down, equal to ``protocol.imresize`` of the whole plane to the bit (each output
    row sums the same taps in the same order, then each column).

    Made at most BAND_PIXELS output pixels at a time, so the float64 temporaries stay small; between bands
    only the few rows of Y that the rows still to make read are kept (a copy: not the band they came from).
    """
    rows, row_weights = P.contributions(h * big, h * scale, h * scale / (h * big))  # imresize(size=)'s scale
    cols, col_weights = P.contributions(w * big, w * scale, w * scale / (w * big))
    reach = np.maximum.accumulate(rows.max(axis=1).reshape(h, scale).max(axis=1))  # an LR row's last Y row read
    first = np.minimum.accumulate(rows.min(axis=1)[::-1])[::-1]  # the first Y row read by this output row or later
    step = max(1, BAND_PIXELS // (w * big * scale))  # LR rows made at once
    kept, done = np.empty((0, w * big), np.float32), 0  # kept: the Y rows just before this band's, still read
    for r0, r1, (y,) in ys:
        ready = h if r1 == h else int(np.searchsorted(reach, r1 * big))  # LR rows whose Y rows have all come
        for a in range(done, ready, step):
            o0, o1 = a * scale, min(a + step, ready) * scale
            lo, hi = int(rows[o0:o1].min()), int(rows[o0:o1].max()) + 1
            part = P.resize_rows_by(_y_rows(kept, y, r0 * big, lo, hi), rows[o0:o1] - lo, row_weights[o0:o1])
            out = P.resize_rows_by(np.ascontiguousarray(part.T), cols, col_weights).T
            del part
            yield a, o1 // scale, [out]
            del out
        done = ready
        if done < h:
            kept = _y_rows(kept, y, r0 * big, int(first[done * scale]), r1 * big).copy()
        del y


def _y_rows(kept: np.ndarray, y: np.ndarray, y_start: int, lo: int, hi: int) -> np.ndarray:
    """Y rows [lo, hi) from ``kept`` (the rows just before ``y_start``) and ``y`` (rows from it on): a view
    of one of them, or a copy of those rows where they straddle the two."""
    k = len(kept) - y_start  # kept's row i is Y row i - k
    if lo >= y_start:
        return y[lo - y_start : hi - y_start]
    if hi <= y_start:
        return kept[lo + k : hi + k]
    return np.concatenate([kept[lo + k :], y[: hi - y_start]])


def super_resolve(upscaler: Tiler, img: np.ndarray, scale: float, dtype=np.float64) -> np.ndarray:
    """Upscale HxW (gray) or HxWx3 (RGB) samples, float64 in [0, 1] or 8/16-bit integers, the authors' way.

    RGB: BT.601 Y through the network; Cb/Cr bicubic-upscaled; back to RGB.
    Gray: treated as RGB with three equal channels (Y = 16/255 + 219/255 g),
    so gray and colour images take the same path. A scale that is not a power
    of two runs to the next level and is resized down bicubically, as the
    official MS-LapSRN code does for x3. Output is clipped to [0, 1] and of
    ``dtype``: float64, or uint8/uint16 quantised band by band. At an integer
    scale each band of the network's output goes straight into the output, so
    a large upscale holds the input, the output and the feature maps, no more.
    Runs within the upscaler's thread limits (``Tiler.limits``).
    """
    levels = levels_for(scale)
    h, w = img.shape[:2]
    if scale == int(scale) and min(h, w) >= MIN_SIDE:
        out = np.empty((h * int(scale), w * int(scale), *img.shape[2:]), dtype)
        for _ in output_strips(upscaler, img, int(scale), dtype, img.nbytes, out):
            pass
        return out
    with upscaler.limits():
        return _compose(img, _network_planes(upscaler, luma(img), levels, last_only=True)[-1], scale, dtype)


def super_resolve_pyramid(upscaler: Tiler, img: np.ndarray, levels: int, dtype=np.float64) -> list[np.ndarray]:
    """x2, x4, ... x2^levels of one image from a single forward pass, as ``super_resolve`` composes them."""
    with upscaler.limits():
        ys = _network_planes(upscaler, luma(img), levels)
        return [_compose(img, y, 2**l, dtype) for l, y in enumerate(ys, start=1)]


def bicubic(img: np.ndarray, scale: float) -> np.ndarray:
    """The papers' baseline: MATLAB bicubic upscaling of every channel, clipped to [0, 1]."""
    return np.clip(P.imresize(floats(img), scale), 0.0, 1.0)
