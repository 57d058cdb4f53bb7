"""Upscaling whole pictures and files: colour, gray, alpha and bit depth kept, memory checked first."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import protocol as P
from .imaging import levels_for, quantize, super_resolve, super_resolve_pyramid
from .io import ImageError, Picture, image_header, memory_limit, read_image, write_image

if TYPE_CHECKING:
    from .inference import Upscaler

Output = tuple[Picture, Path]  # an upscaled picture and the path it is written to
BYTES_PER_OUTPUT_PIXEL = 16  # network Y (float32), the output samples and the encoder's copy; float64 only per band


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


def check_budget(upscaler: Upscaler, h: int, w: int, colour: bool, bits: int, scale: float) -> None:
    """Refuse, from the header and before decoding, an image the memory budget cannot run: ``super_resolve``'s
    own reckoning (the float64 image and its YCbCr, the output samples) passed to the tiler, which raises the
    --max-memory line. Other scales size their tiles as they go and are checked then."""
    levels = levels_for(scale)
    if scale != 2**levels:
        return
    # the header's guesses can be off (a 16-bit gray+alpha PNG opens as RGBA; a TIFF's turn depends on
    # Pillow's version): count the least the image can take, and refuse only if neither orientation fits
    held = h * w * 8 + h * w * 3 * 8 + h * w * 4**levels
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


def upscale_picture(upscaler: Upscaler, pic: Picture, scale: float) -> Picture:
    """One output picture at any scale > 1; samples already quantised to the source's bit depth."""
    check_output_size(*pic.pixels.shape[:2], scale)
    dtype = sample_type(pic.bits)
    return Picture(super_resolve(upscaler, pic.pixels, scale, dtype), _alpha(pic.alpha, scale, dtype), pic.bits)


def pyramid_picture(upscaler: Upscaler, pic: Picture, levels: int) -> list[Picture]:
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


def upscale_outputs(upscaler: Upscaler, src: Path, dst: Path, scale: float, all_levels: bool = False) -> list[Output]:
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
    upscaler: Upscaler,
    src: Path,
    dst: Path,
    scale: float,
    all_levels: bool = False,
    quality: int = 95,
    png_compression: int = 1,
) -> list[Path]:
    """Read, upscale, write atomically; returns the paths written."""
    return write_outputs(upscale_outputs(upscaler, src, dst, scale, all_levels), quality, png_compression)


def _from_kind(image) -> tuple[Picture, object]:
    """Picture from a PIL image, NumPy array or torch tensor, plus how to turn results back.

    Samples go through ``io.to_float``, the file reader's conversion, so arrays,
    tensors and files accept and refuse the same things. torch is used only if the
    caller already imported it: a tensor cannot exist otherwise, and the API works
    without torch installed.
    """
    from PIL import Image

    from .io import _picture, encode, to_float

    if isinstance(image, (str, os.PathLike)):
        raise ValueError(
            f"upscale takes an image, not a path: open it first (PIL.Image.open({str(image)!r})), "
            "or upscale files with `lapsrn upscale -i`"
        )
    if isinstance(image, Image.Image):
        pic = _picture(image)
        return pic, lambda out: encode(out, "TIFF" if pic.bits > 8 else "PNG")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(image, torch.Tensor):
        return _from_tensor(torch, image)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"expected HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    px, bits = to_float(arr)
    alpha = px[..., 3] if arr.ndim == 3 and arr.shape[-1] == 4 else None
    px = px[..., :3] if alpha is not None else px

    def to_array(out: Picture) -> np.ndarray:
        res = out.pixels if out.alpha is None else np.dstack([out.pixels, out.alpha])
        return res.astype(arr.dtype, copy=False)  # 8/16-bit results are already quantised

    return Picture(px, alpha, bits), to_array


def _from_tensor(torch, image) -> tuple[Picture, object]:
    """HxW, CxHxW or 1xCxHxW tensor -> Picture, read by its dtype like a NumPy array (uint8 stays 0..255); a
    batch of one comes back as a batch of one."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"one image at a time: got a batch of {image.shape[0]} (loop over it)")
        pic, back = _from_tensor(torch, image[0])
        return pic, lambda out: back(out)[None]
    t = image.detach().cpu()
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # half / bfloat16: NumPy has no bfloat16
    arr = t.numpy()
    arr = np.moveaxis(arr, 0, -1) if arr.ndim == 3 else arr
    squeeze = arr.ndim == 3 and arr.shape[-1] == 1
    pic, back = _from_kind(arr[..., 0] if squeeze else arr)

    def to_tensor(out: Picture):
        res = back(out)
        t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(res, -1, 0) if res.ndim == 3 else res))
        return (t[None] if squeeze else t).to(image.dtype)

    return pic, to_tensor


def upscale_image(upscaler: Upscaler, image, scale: float, all_levels: bool = False):
    """Python API: a PIL image, NumPy array or torch tensor in, the same kind, layout and dtype out.

    Arrays: HxW, HxWx3 or HxWx4; uint8, uint16 or float in [0, 1]. Tensors:
    HxW or CxHxW (C = 1, 3, 4) of the same dtypes. NaN or infinite samples are refused. With ``all_levels`` a list
    of every pyramid level up to ``scale`` (a power of two) comes back.
    """
    pic, back = _from_kind(image)
    if all_levels:
        return [back(p) for p in pyramid_picture(upscaler, pic, levels_for(scale))]
    return back(upscale_picture(upscaler, pic, scale))
