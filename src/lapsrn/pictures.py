"""Upscaling pictures and image files: colour, gray, alpha and bit depth kept, memory checked first.

A ``Picture`` (``io``) in, pictures out, through ``colour.super_resolve``; files are read, checked
against the budget from their header, upscaled and written atomically. The folder runner (``batch``),
the Python API (``api``), the app and the video path build on these.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import protocol as P
from .colour import (
    bicubic_bands,
    floats,
    levels_for,
    output_strips,
    quantize,
    resize_rows,
    super_resolve,
    super_resolve_pyramid,
)
from .io import ImageError, Picture, image_header, output_format, read_image, write_image
from .memory import BAND_PIXELS, BYTES_PER_OUTPUT_PIXEL, format_size, memory_limit
from .strips import STREAMED_FORMATS, write_strips

STRIP_PIXELS = BAND_PIXELS // 4  # output pixels handed to the strip writer at once: its copies stay a few MB

if TYPE_CHECKING:
    from .tiling import Tiler

Output = tuple[Picture, Path]  # an upscaled picture and the path it is written to


def sample_type(bits: int) -> type:
    """Output samples are quantised as they are composed: 8-bit sources to uint8, 16-bit to uint16."""
    return {8: np.uint8, 16: np.uint16}.get(bits, np.float64)


def check_output_size(h: int, w: int, scale: float, limit: int | None = None) -> None:
    """Refuse, before any work, an output that cannot fit in memory."""
    oh, ow = P.output_size(h, scale), P.output_size(w, scale)
    need = oh * ow * BYTES_PER_OUTPUT_PIXEL
    limit = memory_limit() if limit is None else limit
    if need > limit:
        raise ImageError(
            f"output {ow}x{oh} would need about {need / 2**30:.1f} GB, over the {limit / 2**30:.1f} GB limit"
        )


def sample_bytes(bits: int) -> int:
    """Bytes a decoded sample takes as ``io.read_image(samples=True)`` keeps it: 8-bit 1, 16-bit 2, float 8."""
    return {8: 1, 16: 2}.get(bits, 8)


def check_budget(upscaler: Tiler, h: int, w: int, channels: int, bits: int, scale: float, fmt: str = "PNG") -> bool:
    """Refuse, from the header and before decoding, an image the memory budget cannot run; say whether its
    output is written in strips as it is made (``stream_file``) rather than held whole.

    Whole: the input samples, their float32 Y plane and the output samples beside the network
    (``colour.output_strips``), then the output beside the encoder's copy (Pillow holds colour at four
    bytes a pixel). When that does not fit and the format is written in strips (PNG, TIFF), only a band
    of output rows exists at a time. An integer scale that is not a power of two runs the network to the
    next one (its bands counted at that level) and resizes its Y down band by band; other scales size
    their tiles as they go and are checked then.
    The header's guesses can be off (a 16-bit gray+alpha PNG opens as RGBA; a TIFF's turn depends on
    Pillow's version): the least the image can take is counted, and it is refused only if neither
    orientation fits.
    """
    levels = levels_for(scale)
    if scale != int(scale):
        return False
    size = sample_bytes(bits)
    pixels, out_pixels = h * w, h * w * int(scale) ** 2
    whole = pixels * channels * size + pixels * 4 + out_pixels * channels * size
    encoder = out_pixels * (4 if channels >= 3 and size == 1 else channels * size)
    saved = pixels * channels * size + out_pixels * channels * size + encoder

    def fits(reserved: int, row_bytes: int = 0) -> None:
        try:
            upscaler.tile_size(h, w, levels, reserved, row_bytes)
        except ValueError as refusal:
            try:
                upscaler.tile_size(w, h, levels, reserved, row_bytes * h // w)
            except ValueError:
                raise refusal from None

    try:
        fits(whole)
        if saved <= upscaler.max_memory or upscaler.tile:
            return False
    except ValueError:
        pass
    if fmt not in STREAMED_FORMATS:
        need = max(upscaler.least_memory(min(h, w), levels, whole), saved)
        raise ValueError(
            f"--max-memory {format_size(upscaler.max_memory)} is too small to write x{scale:g} of a {w}x{h} image "
            f"as {fmt}, which is encoded whole: give at least {format_size(need)}, or write .png or .tif, which are "
            "written as they are made"
        )
    fits(pixels * channels * size + pixels * 4, w * int(scale) ** 2 * channels * size)
    return True


def _alpha(alpha: np.ndarray | None, scale: float, dtype: type) -> np.ndarray | None:
    """Alpha is upscaled bicubically, clipped, in the same sample type as the colour; at an integer scale in
    bands of rows (``colour.bicubic_bands``), so no float64 plane of the output's size is made."""
    if alpha is None:
        return None
    if scale != int(scale):
        return quantize(np.clip(P.imresize(floats(alpha), scale), 0.0, 1.0), dtype)
    return bicubic_bands(alpha, int(scale), dtype)


def upscale_picture(upscaler: Tiler, pic: Picture, scale: float) -> Picture:
    """One output picture at any scale > 1; samples already quantised to the source's bit depth."""
    check_output_size(*pic.pixels.shape[:2], scale)
    dtype = sample_type(pic.bits)
    return Picture(super_resolve(upscaler, pic.pixels, scale, dtype), _alpha(pic.alpha, scale, dtype), pic.bits)


def pyramid_picture(upscaler: Tiler, pic: Picture, levels: int) -> list[Picture]:
    """x2 .. x2^levels pictures from one forward pass."""
    check_output_size(*pic.pixels.shape[:2], 2**levels)
    dtype = sample_type(pic.bits)
    outs = super_resolve_pyramid(upscaler, pic.pixels, levels, dtype)
    return [Picture(o, _alpha(pic.alpha, 2**l, dtype), pic.bits) for l, o in enumerate(outs, start=1)]


def level_path(path: Path, factor: float) -> Path:
    """photo.png -> photo_x2.png: the name of one level written by --all-levels."""
    return path.with_name(f"{path.stem}_x{factor:g}{path.suffix}")


def level_factors(scale: float) -> list[float]:
    """What --all-levels writes: every pyramid level below ``scale``, then ``scale`` itself (-s 3: x2, x3)."""
    return [2**l for l in range(1, levels_for(scale)) if 2**l < scale] + [scale]


def upscale_outputs(upscaler: Tiler, src: Path, dst: Path, scale: float, all_levels: bool = False) -> list[Output]:
    """Read and upscale: each output picture (with the source's ICC profile and EXIF) and its path.

    Sizes are checked before decoding. ``write_outputs`` writes them; the command line writes one
    image's outputs while the next is upscaled. An output too large to hold whole is ``stream_file``'s.
    """
    w, h, colour, bits = image_header(src)
    check_output_size(h, w, scale)
    if w and not all_levels and check_budget(upscaler, h, w, 3 if colour else 1, bits, scale, output_format(dst)):
        raise ValueError(f"{src}: its x{scale:g} output is written in strips (pictures.stream_file)")
    pic = read_image(src, samples=True)

    def tagged(out: Picture) -> Picture:
        return replace(out, icc=pic.icc, exif=pic.exif)

    if not all_levels:
        return [(tagged(upscale_picture(upscaler, pic, scale)), dst)]
    factors = level_factors(scale)
    power_of_two = factors[-1] == 2 ** len(factors)
    levels = len(factors) if power_of_two else len(factors) - 1  # what one pyramid pass gives
    outs = pyramid_picture(upscaler, pic, levels) if levels else []
    if len(outs) < len(factors):  # a non-power-of-two scale: its own pass
        outs.append(upscale_picture(upscaler, pic, scale))
    return [(tagged(out), level_path(dst, factor)) for factor, out in zip(factors, outs)]


def streamed(upscaler: Tiler, src: Path, dst: Path, scale: float, all_levels: bool = False) -> bool:
    """Whether this file's output is too large to hold whole within the budget and is written as it is
    made (``stream_file``); a budget too small for either way is refused here, before decoding."""
    w, h, colour, bits = image_header(src)
    if not w or all_levels:
        return False
    check_output_size(h, w, scale)
    return check_budget(upscaler, h, w, 3 if colour else 1, bits, scale, output_format(dst))


def stream_file(upscaler: Tiler, src: Path, dst: Path, scale: float, png_compression: int = 1) -> list[Path]:
    """Upscale a picture at an integer scale into a PNG or TIFF written a band of rows at a time (``strips``):
    the input's samples, their Y plane and one band of output rows are all it holds; same pixels as
    ``upscale_outputs`` and ``write_outputs``."""
    pic = read_image(src, samples=True)
    dtype, s, (h, w) = sample_type(pic.bits), int(scale), pic.pixels.shape[:2]
    held = pic.pixels.nbytes + (0 if pic.alpha is None else pic.alpha.nbytes)
    strips = output_strips(upscaler, pic.pixels, s, dtype, held)
    channels = (3 if pic.pixels.ndim == 3 else 1) + (pic.alpha is not None)

    def rows() -> Iterator[np.ndarray]:
        """Each band in blocks of rows, alpha beside the colour, so the writer's copies stay small."""
        for first, band in strips:
            step = max(s, STRIP_PIXELS // band.shape[1] // s * s)
            for r in range(0, band.shape[0], step):
                block = band[r : r + step]
                if pic.alpha is None:
                    yield block.copy()  # a view would keep the whole band alive in the writer
                    continue
                lr = (first + r) // s
                alpha = quantize(np.clip(resize_rows(pic.alpha, lr, lr + block.shape[0] // s, s), 0.0, 1.0), dtype)
                yield np.concatenate([block.reshape(*block.shape[:2], -1), alpha[..., None]], axis=2)
            del band, block  # not alive while the next band runs

    shape = (h * s, w * s) + ((channels,) if channels > 1 else ())
    write_strips(dst, rows(), shape, pic.bits, pic.icc, pic.exif, png_compression)
    return [dst]


def write_outputs(outputs: list[Output], quality: int = 95, png_compression: int = 1) -> list[Path]:
    """Write each output atomically (EXIF orientation reset, ICC kept where the format holds them)."""
    for out, path in outputs:
        write_image(out, path, quality, png_compression)
    return [path for _, path in outputs]


def held_bytes(outputs: list[Output]) -> int:
    """The samples the outputs hold: what waiting to be written keeps in memory."""
    return sum(out.pixels.nbytes + (0 if out.alpha is None else out.alpha.nbytes) for out, _ in outputs)


def upscale_file(
    upscaler: Tiler,
    src: Path,
    dst: Path,
    scale: float,
    all_levels: bool = False,
    quality: int = 95,
    png_compression: int = 1,
) -> list[Path]:
    """Read, upscale, write atomically (in strips when the output is too large to hold); returns the paths
    written."""
    if streamed(upscaler, src, dst, scale, all_levels):
        return stream_file(upscaler, src, dst, scale, png_compression)
    return write_outputs(upscale_outputs(upscaler, src, dst, scale, all_levels), quality, png_compression)
