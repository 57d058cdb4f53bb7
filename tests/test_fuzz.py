"""Fuzzing the image reader and `lapsrn upscale`: every input either upscales or fails cleanly.

Clean failure = exit status 1, exactly one line on stderr starting with "lapsrn: error:", no
traceback, and no output file (not even a temp file) left behind. No hang: hypothesis' deadline.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from lapsrn.cli import main
from lapsrn.io import ImageError, read_image
from lapsrn.models import MSLapSRN
from lapsrn.weights import save


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fz") / "tiny.safetensors"
    save(MSLapSRN(depth=1, recursions=1), path)
    return str(path)


def encoded(fmt: str, mode: str = "RGB", size=(7, 5), **kw) -> bytes:
    rng = np.random.default_rng(0)
    arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    im = Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png16(planes: int, size=(7, 5)) -> bytes:
    """16-bit PNG (gray+alpha or RGB) written by pypng: Pillow cannot encode these."""
    import png

    rng = np.random.default_rng(0)
    arr = (rng.random((size[1], size[0] * planes)) * 65535).astype(np.uint16)
    buf = io.BytesIO()
    png.Writer(size[0], size[1], bitdepth=16, greyscale=planes <= 2, alpha=planes in (2, 4)).write(buf, arr)
    return buf.getvalue()


def tiff(arr: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="rgb" if arr.ndim == 3 else "minisblack")
    return buf.getvalue()


def png_header(w: int, h: int) -> bytes:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


SEEDS = {
    "png": encoded("PNG"),
    "jpeg": encoded("JPEG"),
    "tiff": encoded("TIFF"),
    "webp": encoded("WEBP", lossless=True),
}


def check_upscale(tmp: Path, data: bytes, name: str, tiny: str, capsys) -> str:
    """Run upscale on bytes; assert the clean-success-or-clean-failure contract; return the outcome."""
    src, out = tmp / name, tmp / "out.png"
    src.write_bytes(data)
    out.unlink(missing_ok=True)
    code = main(["upscale", "-i", str(src), "-o", str(out), "-s", "2", "-m", tiny])
    err = capsys.readouterr().err
    assert not list(tmp.glob(".*.tmp")), "temp file left behind"
    if code == 0:
        with Image.open(out) as im:
            im.load()
        return "ok"
    assert code == 1
    assert err.startswith("lapsrn: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
    return "error"


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_every_truncation_point(tmp_path, tiny, capsys, fmt):
    data = SEEDS[fmt]
    outcomes = {check_upscale(tmp_path, data[:cut], f"t.{fmt}", tiny, capsys) for cut in range(len(data))}
    assert "error" in outcomes  # the empty and header-only prefixes must fail
    assert check_upscale(tmp_path, data, f"t.{fmt}", tiny, capsys) == "ok"


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), ext=st.sampled_from(["png", "jpg", "tif", "webp", "gif", "bmp"]))
def test_random_bytes(tmp_path, tiny, capsys, data, ext):
    assert check_upscale(tmp_path, data, f"r.{ext}", tiny, capsys) == "error"


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=8),
)
@example(seed="tiff", flips=[(130, 1)])  # found by this test: Pillow raised TypeError("Missing dimensions")
@example(seed="tiff", flips=[(90, 118), (232, 69), (168, 141)])  # found: Pillow logged a second stderr line
def test_corrupted_bytes(tmp_path, tiny, capsys, seed, flips):
    data = bytearray(SEEDS[seed])
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    check_upscale(tmp_path, bytes(data), f"c.{seed}", tiny, capsys)


def test_output_too_big_is_refused_from_the_header_before_decoding(tmp_path, tiny, capsys):
    """A header claiming 10000x10000 (no pixel data follows): refused for its x8 size, not decoded."""
    (tmp_path / "big.png").write_bytes(png_header(10_000, 10_000))
    code = main(["upscale", "-i", str(tmp_path / "big.png"), "-o", str(tmp_path / "o.png"), "-s", "8", "-m", tiny])
    err = capsys.readouterr().err
    assert code == 1 and "would need about" in err and err.count("\n") == 1


def test_input_too_big_to_decode_is_refused(tmp_path, monkeypatch):
    import lapsrn.io as lio

    (tmp_path / "a.png").write_bytes(encoded("PNG", size=(64, 64)))
    monkeypatch.setattr(lio, "memory_limit", lambda: 64 * 64 * lio.BYTES_PER_INPUT_PIXEL - 1)
    with pytest.raises(ImageError, match="needs more memory to decode"):
        read_image(tmp_path / "a.png")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_header(100_000, 100_000))
    with pytest.raises(ImageError, match="pixel limit"):
        read_image(tmp_path / "bomb.png")


@pytest.mark.parametrize(
    "name,make,expect",
    [
        ("zero.png", lambda: png_header(0, 10), "error"),
        ("one.png", lambda: encoded("PNG", size=(1, 1)), "ok"),
        ("pal.png", lambda: encoded("PNG", "P"), "ok"),
        ("cmyk.jpg", lambda: encoded("JPEG", "CMYK"), "ok"),
        ("cmyk.tif", lambda: encoded("TIFF", "CMYK"), "ok"),
        ("la.png", lambda: encoded("PNG", "LA"), "ok"),
        ("i16.png", lambda: encoded("PNG", "I;16"), "ok"),
        ("float.tif", lambda: encoded("TIFF", "F"), "ok"),
        ("bilevel.png", lambda: encoded("PNG", "1"), "ok"),
        ("wrong_ext.jpg", lambda: encoded("PNG"), "ok"),
        ("png_as.tif", lambda: encoded("PNG"), "ok"),
        ("la16.png", lambda: png16(2), "ok"),
        ("rgb16.png", lambda: png16(3), "ok"),
        ("float_rgb.tif", lambda: tiff(np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)), "ok"),
        ("float_rgba.tif", lambda: tiff(np.random.default_rng(0).random((5, 7, 4)).astype(np.float32)), "ok"),
        ("nan_rgb.tif", lambda: tiff(np.full((5, 7, 3), np.nan, np.float32)), "error"),
        ("inf_gray.tif", lambda: tiff(np.full((5, 7), np.inf, np.float32)), "error"),
        ("tiff_magic_garbage.tif", lambda: b"II*\0" + bytes(40), "error"),
    ],
)
def test_odd_modes_and_sizes(tmp_path, tiny, capsys, name, make, expect):
    assert check_upscale(tmp_path, make(), name, tiny, capsys) == expect


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_multi_frame_is_refused(tmp_path, tiny, capsys, fmt):
    frames = [Image.new("RGB", (6, 6), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
    assert check_upscale(tmp_path, buf.getvalue(), f"m.{fmt.lower()}", tiny, capsys) == "error"


def test_16bit_gray_alpha_png_keeps_both_planes(tmp_path):
    (tmp_path / "la.png").write_bytes(png16(2))
    pic = read_image(tmp_path / "la.png")
    assert pic.bits == 16 and pic.pixels.shape == (5, 7) and pic.alpha is not None and pic.alpha.shape == (5, 7)


def test_float_colour_tiff_values_are_read(tmp_path):
    arr = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    (tmp_path / "f.tif").write_bytes(tiff(arr))
    pic = read_image(tmp_path / "f.tif")
    assert pic.bits == 32 and np.array_equal(pic.pixels, arr.astype(np.float64))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_of_16bit_colour_matches_pillow_on_8bit(tmp_path, orientation):
    """The 16-bit reader's own transpose agrees with Pillow's exif_transpose for every EXIF orientation."""
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    u16 = (rng.random((5, 7, 3)) * 65535).astype(np.uint16)
    exif = Image.Exif()
    exif[0x0112] = orientation
    u8 = Image.fromarray((u16 >> 8).astype(np.uint8))
    u8.save(tmp_path / "o8.png", exif=exif)
    import png

    buf = io.BytesIO()
    png.Writer(7, 5, bitdepth=16, greyscale=False).write(buf, u16.reshape(5, 21))
    data = buf.getvalue()
    exif_chunk = exif.tobytes()[6:]  # PNG eXIf holds the TIFF block without the "Exif\0\0" header
    chunk = (
        struct.pack(">I", len(exif_chunk)) + b"eXIf" + exif_chunk + struct.pack(">I", zlib.crc32(b"eXIf" + exif_chunk))
    )
    (tmp_path / "o16.png").write_bytes(data[:33] + chunk + data[33:])  # after IHDR
    got = read_image(tmp_path / "o16.png")
    want = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o8.png")))
    assert got.bits == 16
    np.testing.assert_array_equal((np.round(got.pixels * 65535).astype(np.uint16) >> 8).astype(np.uint8), want)
