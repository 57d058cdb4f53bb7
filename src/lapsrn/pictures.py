"""Upscaling pictures and image files: colour, gray, alpha and bit depth kept, memory checked first.

A ``Picture`` (``io``) in, pictures out, through ``colour.super_resolve``; files are read, checked
against the budget from their header, upscaled and written atomically. The folder runner (``batch``),
the Python API (``api``), the app and the video path build on these.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import protocol as P
from .colour import levels_for, quantize, super_resolve, super_resolve_pyramid
from .io import ImageError, Picture, image_header, read_image, write_image
from .memory import BYTES_PER_OUTPUT_PIXEL, memory_limit, picture_bytes

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


def check_budget(upscaler: Tiler, h: int, w: int, colour: bool, bits: int, scale: float) -> None:
    """Refuse, from the header and before decoding, an image the memory budget cannot run: ``super_resolve``'s
    own reckoning (the float64 image and its YCbCr, the output samples) passed to the tiler, which raises the
    --max-memory line. Other scales size their tiles as they go and are checked then."""
    levels = levels_for(scale)
    if scale != 2**levels:
        return
    # the header's guesses can be off (a 16-bit gray+alpha PNG opens as RGBA; a TIFF's turn depends on
    # Pillow's version): count the least the image can take, and refuse only if neither orientation fits
    held = picture_bytes(h, w, levels)
    try:
        upscaler.tile_size(h, w, levels, held)
    except ValueError as refusal:
        try:
            upscaler.tile_size(w, h, levels, held)
        except ValueError:
            raise refusal from None


def _alpha(alpha: np.ndarray | None, scale: float, dtype: type) -> np.ndarray | None:
    """Alpha is upscaled bicubically, clipped, in the same sample type as the colour."""
    return None if alpha is None else quantize(np.clip(P.imresize(alpha, scale), 0.0, 1.0), dtype)


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
    image's outputs while the next is upscaled.
    """
    w, h, colour, bits = image_header(src)
    check_output_size(h, w, scale)
    if w and not all_levels:
        check_budget(upscaler, h, w, colour, bits, scale)
    pic = read_image(src)

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
    """Read, upscale, write atomically; returns the paths written."""
    return write_outputs(upscale_outputs(upscaler, src, dst, scale, all_levels), quality, png_compression)
