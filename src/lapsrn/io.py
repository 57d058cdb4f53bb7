"""Reading and writing images safely: clear errors, bounded memory, atomic writes.

Images are decoded with Pillow (the standard, well-kept decoder for the
formats users have) and handed around as ``Picture``: float64 pixels in
[0, 1] plus what is needed to write the result back the same way (alpha,
bit depth). Pillow has no 16-bit colour mode (it silently keeps the high
byte), so 16-bit colour PNG goes through ``pypng`` and 16-bit or float
colour TIFF through ``tifffile``, both small, pure-Python and well-kept.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .memory import BYTES_PER_INPUT_PIXEL, memory_limit

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MAX_INPUT_PIXELS = 1 << 28  # 268 Mpx: a header claiming more is a decompression bomb


def configure_process() -> None:
    """Pillow's settings for lapsrn's own processes (the command, the app's server), never for a library caller's.

    Pillow refuses images over 179 Mpx as decompression bombs; lapsrn checks the header against its own
    limit and the memory budget instead, so its commands lift Pillow's. Pillow's log of corrupt files
    is silenced, since the command reports each as one line. A program that imports lapsrn keeps its own
    settings: an image over its limit is refused with one line naming it.
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    logging.getLogger("PIL").setLevel(logging.CRITICAL)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels; (0, 0) if unreadable."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return im.size
    except Exception:  # noqa: BLE001 -- read_image reports the real error
        return 0, 0


def image_header(path: str | Path) -> tuple[int, int, bool, int]:
    """(width, height, colour, bits) as decoding will give them, from the header alone: upright (EXIF
    orientation), colour unless gray, 8, 16 or 32 (float) bits a sample; (0, 0, True, 8) if unreadable."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                if _orientation(im) in (5, 6, 7, 8):  # a quarter turn: upright, w and h swap
                    w, h = h, w
                colour = im.mode not in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
                bits = 32 if im.mode == "F" else 16 if im.mode.startswith("I") or _is_deep_colour(im) else 8
                return w, h, colour, bits
    except Exception:  # noqa: BLE001 -- read_image reports the real error
        return 0, 0, True, 8


def _orientation(im) -> int:
    """EXIF orientation where the header holds it (JPEG, TIFF, WebP); 1 otherwise. PNG's EXIF can follow the
    pixels, and Pillow decodes them to find it: not worth it for a check made to avoid decoding."""
    if im.format not in ("JPEG", "MPO", "TIFF", "WEBP"):
        return 1
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 -- a damaged EXIF block: read_image decides
        return 1


class ImageError(ValueError):
    """An image that cannot be read or written; the message is one line for the user."""


@dataclass
class Picture:
    """Image: HxW (gray) or HxWx3 (RGB), float64 in [0, 1] (or, for outputs, uint8/uint16 samples),
    optional alpha of the same type, and the source's bit depth."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bits: int = 8  # 8 or 16 (integer samples), 32 (float samples)
    icc: bytes | None = None  # colour profile, written back where the format holds one
    exif: bytes | None = None  # EXIF with orientation reset to 1: the pixels are already upright


def to_uint16(img: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 16-bit samples, saturating and rounding half up like im2uint8."""
    if img.dtype == np.uint16:
        return img
    return np.floor(np.clip(img, 0, 1) * 65535 + 0.5).astype(np.uint16)


def to_float(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer or float samples -> float64 [0, 1] and the bit depth to write back.

    The one conversion for files and the Python API alike, so both refuse the same
    things: a NaN or infinity would silently spread over the whole output.
    """
    if arr.dtype == np.uint8:
        return arr / 255.0, 8
    if arr.dtype in (np.uint16, np.int32, np.uint32, np.int16):
        return np.clip(arr.astype(np.float64), 0, 65535) / 65535.0, 16
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError("image has NaN or infinite samples")
        return np.clip(arr.astype(np.float64), 0.0, 1.0), 32
    if arr.dtype == np.bool_:
        return arr.astype(np.float64), 8
    raise ImageError(f"unsupported sample type {arr.dtype} (use uint8, uint16 or float)")


def samples_of(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Decoded samples kept as they are (8-bit uint8, 16-bit uint16, floats as float64 [0, 1]) and their depth:
    what ``to_float`` would give, in a quarter of the memory or less, converted later a band at a time."""
    if arr.dtype in (np.uint8, np.uint16):
        return arr, 8 if arr.dtype == np.uint8 else 16
    if arr.dtype in (np.int32, np.uint32, np.int16):
        return np.clip(arr, 0, 65535).astype(np.uint16), 16
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255), 8
    return to_float(arr)


def read_image(path: str | Path, max_pixels: int = MAX_INPUT_PIXELS, samples: bool = False) -> Picture:
    """Decode one still image (EXIF orientation applied) or raise ImageError with a one-line reason.

    ``samples``: keep the decoded 8/16-bit integers (``samples_of``) rather than float64 [0, 1]; large
    upscales read this way."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                opened = Image.open(path)
            except UnidentifiedImageError:
                if not _is_tiff(path):
                    raise
                return _read_other_tiff(path, max_pixels, samples)
            with opened as im:
                _check_size(path, *im.size, max_pixels)
                if getattr(im, "n_frames", 1) > 1:
                    raise ImageError(f"{path}: has {im.n_frames} frames; only single-frame images are supported")
                deep = _is_deep_colour(im)  # before getexif(), which may decode a PNG (8-bit)
                icc, exif = im.info.get("icc_profile"), _upright_exif(im)
                if deep:
                    orientation = im.getexif().get(0x0112, 1)
                    return replace(_read_deep_colour(path, im.format, orientation, samples), icc=icc, exif=exif)
                im = ImageOps.exif_transpose(im)
                im.load()
                return replace(_picture(im, samples), icc=icc, exif=exif)
    except ImageError as e:
        msg = str(e)
        raise ImageError(msg if msg.startswith(f"{path}:") else f"{path}: {msg}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: over this process's PIL.Image.MAX_IMAGE_PIXELS ({e})") from None
    except Exception as e:  # noqa: BLE001 -- decoders raise many types on corrupt data (TypeError from TIFF tags, ...)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{path}: cannot decode image ({msg})") from None


def _is_tiff(path: Path) -> bool:
    """TIFF magic bytes (little- or big-endian): worth a second try with tifffile."""
    with open(path, "rb") as f:
        return f.read(4) in (b"II*\0", b"MM\0*")


def _check_size(path: Path, w: int, h: int, max_pixels: int) -> None:
    """Refuse, from the header alone, images with no pixels or too many to decode."""
    if w < 1 or h < 1:
        raise ImageError(f"{path}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"{path}: {w}x{h} is larger than the {max_pixels:,} pixel limit")
    if w * h * BYTES_PER_INPUT_PIXEL > memory_limit():
        raise ImageError(f"{path}: {w}x{h} needs more memory to decode than the {memory_limit() / 2**30:.1f} GB limit")


def _upright_exif(im) -> bytes | None:
    """A copy of the image's EXIF block with orientation set to 1 (None if it has none)."""
    from PIL import Image

    if not len(im.getexif()):
        return None
    exif = Image.Exif()
    exif.load(im.getexif().tobytes())  # a copy: exif_transpose still needs the original orientation
    if 0x0112 in exif:
        exif[0x0112] = 1
    return exif.tobytes()


def _is_deep_colour(im) -> bool:
    """True for colour PNG/TIFF with more than 8 bits a sample, which Pillow would truncate."""
    if im.format not in ("PNG", "TIFF") or im.mode not in ("RGB", "RGBA"):  # 16-bit gray+alpha PNG opens as RGBA
        return False
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    return any(";16" in str(t[3]) for t in im.tile)  # a tile's args: a named field from Pillow 11, a tuple before


def _read_deep_colour(path: Path, fmt: str, orientation: int = 1, samples: bool = False) -> Picture:
    """16-bit colour or gray+alpha PNG (pypng), 16/32-bit colour TIFF (tifffile) -> upright Picture."""
    if fmt == "PNG":
        import png

        w, h, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = info["planes"]
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, planes)
    else:
        import tifffile

        arr = tifffile.imread(str(path))
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ImageError(f"{path}: unsupported TIFF layout {arr.shape}")
    pixels, bits = (samples_of if samples else to_float)(_orient(arr, orientation))
    if pixels.shape[-1] in (2, 4):  # gray + alpha, RGB + alpha
        return Picture(
            pixels[..., :-1].squeeze(-1) if pixels.shape[-1] == 2 else pixels[..., :3], pixels[..., -1], bits
        )
    return Picture(pixels[..., :3], None, bits)


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to HxW[xC] samples, as Pillow's exif_transpose does for 8-bit images."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, 3),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def _read_other_tiff(path: Path, max_pixels: int, samples: bool = False) -> Picture:
    """Float (or other) colour TIFF that Pillow cannot open, through tifffile; size checked from the header."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            if len(tif.pages) > 1:
                raise ImageError(f"{path}: has {len(tif.pages)} frames; only single-frame images are supported")
            h, w = tif.pages[0].shape[:2]
    except tifffile.TiffFileError:
        raise ImageError(f"{path}: not an image file Pillow or tifffile can read") from None
    _check_size(path, w, h, max_pixels)
    return _read_deep_colour(path, "TIFF", samples=samples)


def _picture(im, samples: bool = False) -> Picture:
    """Pillow image of any mode -> Picture (gray, RGB, with or without alpha), float64 or its samples."""
    convert = samples_of if samples else to_float
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        if mode == "I":  # 32-bit signed: Pillow's mode for 16-bit gray PNG
            arr = np.asarray(im, dtype=np.int32)
        else:
            arr = np.asarray(im)
        pixels, bits = convert(arr)
        return Picture(pixels, None, bits)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info)
    if mode in ("1", "L", "LA", "La"):
        im = im.convert("LA" if has_alpha else "L")
    else:
        im = im.convert("RGBA" if has_alpha else "RGB")
    arr = np.asarray(im)
    alpha = None
    if has_alpha:
        alpha, arr = arr[..., -1], arr[..., :-1]
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    if samples:
        return Picture(np.ascontiguousarray(arr), None if alpha is None else np.ascontiguousarray(alpha), 8)
    return Picture(arr / 255.0, None if alpha is None else alpha / 255.0, 8)


def _umask() -> int:
    """The process umask: from /proc on Linux, which leaves it alone; elsewhere by setting it and setting
    it straight back, which a folder's writer thread must not do while the main thread makes folders."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


TEMP_PATTERN = re.compile(r"\.(?P<name>.+)\.lapsrn-(?P<pid>\d+)-[a-z0-9_]+\.tmp")


def is_temp_file(path: Path) -> bool:
    """True for a temp file written by ``atomic_path`` (``.NAME.lapsrn-PID-RAND.tmp``), never an output."""
    return TEMP_PATTERN.fullmatch(path.name) is not None


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(folder: Path) -> int:
    """Delete lapsrn temp files in ``folder`` whose writer is gone (killed by SIGKILL or a power cut).

    The writer's pid is in the name, so a temp file of another run still writing
    here is left alone. Returns how many were removed.
    """
    removed = 0
    for p in folder.glob(".*.lapsrn-*.tmp") if folder.is_dir() else []:
        m = TEMP_PATTERN.fullmatch(p.name)
        if m and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass  # gone already, or not ours to delete: it is ignored as an output either way
    return removed


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside ``path`` that replaces it only if the block succeeds.

    The temp name carries our pid so that a later run can tell a dead run's
    leftovers (``remove_stale_temps``) from a live run's work in progress.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.lapsrn-{os.getpid()}-", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp (or a writer that recreates it) makes 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


def output_format(path: Path) -> str:
    """Pillow format name for an output path, from its extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unsupported output extension (use one of {', '.join(sorted(FORMATS))})")
    return fmt


def dropped_by_format(pic: Picture, path: Path) -> list[str]:
    """What the output's format cannot hold of a picture, said before it is lost: alpha in JPEG or BMP,
    more than 8 bits a sample in JPEG, WebP or BMP."""
    fmt = output_format(Path(path))
    lost = []
    if pic.alpha is not None and fmt in ("JPEG", "BMP"):
        lost.append(f"its transparency ({fmt} has no alpha)")
    if pic.bits > 8 and fmt in ("JPEG", "WEBP", "BMP"):
        lost.append(f"its {pic.bits}-bit samples ({fmt} holds 8 bits)")
    return lost


def to_uint8(img: np.ndarray) -> np.ndarray:
    """8-bit samples: uint8 as it is, 16-bit by rounding, floats as MATLAB im2uint8."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    from .protocol import im2uint8

    return im2uint8(img)


def encode(pic: Picture, fmt: str):
    """Pillow image for a Picture, keeping bit depth where the format can hold it."""
    from PIL import Image

    px, alpha = pic.pixels, pic.alpha
    if pic.bits > 8 and px.ndim == 2 and alpha is None and fmt in ("PNG", "TIFF"):
        if pic.bits == 32 and fmt == "TIFF":
            return Image.fromarray(px.astype(np.float32), mode="F")
        return Image.fromarray(to_uint16(px))
    u8 = to_uint8(px)
    if alpha is not None and fmt in ("PNG", "TIFF", "WEBP"):
        u8 = np.dstack([u8, to_uint8(alpha)])
    return Image.fromarray(u8)


METADATA = {
    "PNG": ("icc_profile", "exif"),
    "JPEG": ("icc_profile", "exif"),
    "WEBP": ("icc_profile", "exif"),
    "TIFF": ("icc_profile",),
}


def save_options(pic: Picture, fmt: str, quality: int = 95, png_compression: int = 1) -> dict:
    """Pillow save keywords: quality for lossy formats, zlib level for PNG, ICC/EXIF where the format holds them.

    PNG level 1 (OpenCV's default) rather than Pillow's 6: a few percent larger
    files, several times faster to write.
    """
    opts: dict = {
        "JPEG": {"quality": quality},
        "WEBP": {"quality": quality},
        "PNG": {"compress_level": png_compression},
    }.get(fmt, {})
    meta = {"icc_profile": pic.icc, "exif": pic.exif}
    return opts | {k: meta[k] for k in METADATA.get(fmt, ()) if meta[k]}


def write_image(pic: Picture, path: str | Path, quality: int = 95, png_compression: int = 1) -> None:
    """Encode by extension and write atomically: the target is either complete or untouched."""
    path = Path(path)
    fmt = output_format(path)
    if not path.parent.is_dir():
        raise ImageError(f"{path.parent}: output folder does not exist")
    deep = pic.bits > 8 and fmt in ("PNG", "TIFF") and (pic.pixels.ndim == 3 or pic.alpha is not None)
    image = None if deep else encode(pic, fmt)
    try:
        with atomic_path(path) as tmp:
            if deep:
                _write_deep(pic, tmp, fmt)
            else:
                image.save(tmp, format=fmt, **save_options(pic, fmt, quality, png_compression))
    except OSError as e:
        raise ImageError(f"{path}: cannot write ({e.strerror or e})") from None


def tiff_layout(channels: int) -> dict:
    """tifffile's keywords for one page of interleaved samples: RGB or gray, a last channel of alpha marked as
    such (left to guess, tifffile takes a gray+alpha image for a stack of pages one row high)."""
    if channels == 1:
        return {"photometric": "minisblack"}
    layout = {"photometric": "rgb" if channels >= 3 else "minisblack", "planarconfig": "contig"}
    return layout | ({"extrasamples": ("unassalpha",)} if channels in (2, 4) else {})


def _write_deep(pic: Picture, path: Path, fmt: str) -> None:
    """16-bit (or float TIFF) colour/alpha output, which Pillow cannot encode."""
    px = pic.pixels if pic.pixels.ndim == 3 else pic.pixels[..., None]
    if pic.alpha is not None:
        px = np.dstack([px, pic.alpha])
    if fmt == "TIFF" and pic.bits == 32:
        import tifffile

        tifffile.imwrite(str(path), px.astype(np.float32), **tiff_layout(px.shape[-1]))
        return
    u16 = to_uint16(px)
    if fmt == "TIFF":
        import tifffile

        tifffile.imwrite(str(path), u16, **tiff_layout(u16.shape[-1]))
        return
    import png

    h, w, c = u16.shape
    writer = png.Writer(w, h, bitdepth=16, greyscale=c <= 2, alpha=c in (2, 4))
    with open(path, "wb") as f:
        writer.write(f, u16.reshape(h, w * c))
