"""Large outputs written a band of rows at a time: the strip writer's files equal ``write_image``'s, the file
path that streams gives the pixels of the one that holds the output whole, and the budget picks between them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import lapsrn
from lapsrn import memory, pictures, tiling
from lapsrn import protocol as P
from lapsrn.io import ImageError, Picture, read_image, write_image
from lapsrn.strips import write_strips

from .conftest import smooth_image


def _picture(rng, channels: int, bits: int, alpha: bool) -> Picture:
    img = smooth_image(rng, 37, 29, 3)
    px = img if channels == 3 else img[..., 0]
    dtype = {8: np.uint8, 16: np.uint16}.get(bits, np.float64)
    scale = {8: 255, 16: 65535}.get(bits)
    cast = (lambda a: np.floor(a * scale + 0.5).astype(dtype)) if scale else (lambda a: a)
    return Picture(cast(px), cast(rng.random(px.shape[:2])) if alpha else None, bits)


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize(
    ("channels", "bits", "alpha"),
    [
        (3, 8, False),
        (1, 8, False),
        (3, 8, True),
        (1, 8, True),
        (3, 16, False),
        (1, 16, False),
        (3, 16, True),
        (3, 32, False),
    ],
)
def test_strips_equal_the_whole_image_writer(tmp_path, rng, ext, channels, bits, alpha):
    """Every layout the command writes, read back by the same reader (Pillow, pypng or tifffile)."""
    pic = _picture(rng, channels, bits, alpha)
    write_image(pic, tmp_path / f"whole{ext}")
    px = pic.pixels if pic.alpha is None else np.dstack([pic.pixels, pic.alpha])
    strips = [px[r : r + 5] for r in range(0, px.shape[0], 5)]
    write_strips(tmp_path / f"strips{ext}", iter(strips), px.shape, bits)
    whole, streamed = (
        read_image(tmp_path / f"whole{ext}", samples=True),
        read_image(tmp_path / f"strips{ext}", samples=True),
    )
    assert streamed.bits == whole.bits and streamed.pixels.dtype == whole.pixels.dtype
    assert np.array_equal(streamed.pixels, whole.pixels)
    assert (streamed.alpha is None) == (whole.alpha is None)
    assert streamed.alpha is None or np.array_equal(streamed.alpha, whole.alpha)


def test_strips_keep_the_profile_and_png_the_exif(tmp_path, rng):
    exif = Image.Exif()
    exif[0x010F] = "lapsrn test"
    icc = b"\x00\x00\x02\x0cfake profile bytes" * 20
    px = (smooth_image(rng, 20, 30) * 255).astype(np.uint8)
    write_strips(tmp_path / "a.png", iter([px[:7], px[7:]]), px.shape, 8, icc, exif.tobytes())
    with Image.open(tmp_path / "a.png") as im:
        assert im.info["icc_profile"] == icc and im.getexif()[0x010F] == "lapsrn test"
        assert np.array_equal(np.asarray(im), px)
    write_strips(tmp_path / "a.tif", iter([px[:7], px[7:]]), px.shape, 8, icc)
    with Image.open(tmp_path / "a.tif") as im:
        assert im.info["icc_profile"] == icc and np.array_equal(np.asarray(im), px)


def test_a_failing_strip_leaves_nothing(tmp_path, rng):
    """Atomic like every output: an error mid-way leaves neither the file nor a temp beside it."""
    px = (smooth_image(rng, 20, 30) * 255).astype(np.uint8)

    def strips():
        yield px[:10]
        raise ValueError("the network failed")

    (tmp_path / "a.png").write_bytes(b"before")
    with pytest.raises(ValueError, match="network failed"):
        write_strips(tmp_path / "a.png", strips(), px.shape, 8)
    assert (tmp_path / "a.png").read_bytes() == b"before" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(ImageError, match="only PNG and TIFF"):
        write_strips(tmp_path / "a.jpg", iter([px]), px.shape, 8)


def test_the_budget_picks_whole_or_strips_from_the_header():
    """A 12-megapixel photo at the default budget: x2 held whole, x4 to PNG or TIFF in strips, x4 to JPEG (encoded
    whole by Pillow) refused before decoding with what it needs and what fits instead."""
    up = lapsrn.load()
    assert pictures.check_budget(up, 3000, 4000, 3, 8, 2, "PNG") is False
    assert pictures.check_budget(up, 3000, 4000, 3, 8, 2, "JPEG") is False
    assert pictures.check_budget(up, 3000, 4000, 3, 8, 4, "PNG") is True
    assert pictures.check_budget(up, 3000, 4000, 1, 16, 4, "TIFF") is True
    with pytest.raises(
        ValueError, match=r"as JPEG, which is encoded whole: give at least 1\.\d+G, or write .png or .tif"
    ):
        pictures.check_budget(up, 3000, 4000, 3, 8, 4, "JPEG")
    up.max_memory = 100 << 20
    with pytest.raises(ValueError, match="too small for x4 of a 4000x3000 image"):
        pictures.check_budget(up, 3000, 4000, 3, 8, 4, "PNG")


def test_a_scale_between_powers_of_two_is_checked_from_the_header_too():
    """x3 runs the network at x4 and resizes down band by band: held whole when that fits, else in strips,
    refused as JPEG with what it needs; a fractional scale is left to the tiler."""
    up = lapsrn.load()
    assert pictures.check_budget(up, 1000, 1000, 3, 8, 3, "PNG") is False
    assert pictures.check_budget(up, 3000, 4000, 3, 8, 3, "PNG") is True
    with pytest.raises(ValueError, match=r"x3 of a 4000x3000 image as JPEG, which is encoded whole: give at least"):
        pictures.check_budget(up, 3000, 4000, 3, 8, 3, "JPEG")
    assert pictures.check_budget(up, 3000, 4000, 3, 8, 2.5, "PNG") is False


@pytest.mark.parametrize(("h", "w", "big", "scale"), [(37, 23, 4, 3), (16, 9, 8, 5), (21, 30, 8, 6), (9, 11, 8, 7)])
def test_y_resized_down_in_bands_equals_the_whole_plane_to_the_bit(rng, monkeypatch, h, w, big, scale):
    """The network's Y at the next power of two, resized to ``scale`` band by band as it comes (bands of
    uneven height, made a few output rows at a time), is the protocol's resize of the whole plane."""
    from lapsrn import colour

    monkeypatch.setattr(colour, "BAND_PIXELS", 3 * w * big * scale)  # three LR rows at a time
    y = rng.random((h * big, w * big)).astype(np.float32)
    cuts = [0, *sorted(rng.choice(np.arange(1, h), size=min(4, h - 1), replace=False)), h]
    ys = ((r0, r1, [y[r0 * big : r1 * big]]) for r0, r1 in zip(cuts, cuts[1:]))
    got = list(colour._resized_bands(ys, h, w, big, scale))
    assert [b[0] for b in got] == [0] + [b[1] for b in got[:-1]] and got[-1][1] == h  # consecutive, all rows
    whole = P.imresize(y, size=(h * scale, w * scale))
    assert np.array_equal(np.concatenate([b[2][0] for b in got]), whole)


def test_x3_composed_in_bands_equals_the_whole_resize(rng, tiny_overhead, monkeypatch):
    """super_resolve at x3 (the network at x4, its Y resized down as it comes) equals resizing the whole x4
    plane and composing it, the path it replaced: to the bit from one pass, and under a budget that makes
    bands, but for the tiles' float rounding (one level at most)."""
    from lapsrn import colour

    img = (smooth_image(rng, 120, 100) * 255).astype(np.uint8)
    up = lapsrn.load()
    whole = colour._compose(img, colour._network_planes(up, colour.luma(img), 2, last_only=True)[-1], 3, np.uint8)
    assert np.array_equal(colour.super_resolve(up, img, 3, np.uint8), whole)
    up.max_memory = up.least_memory(100, 2, img.nbytes * (3 + 4 + 27) // 3) + (64 << 10)  # input, Y, output
    bands, real = [], colour._resized_bands

    def counted(ys, *args):
        return real((bands.append(b) or b for b in ys), *args)

    monkeypatch.setattr(colour, "_resized_bands", counted)
    diff = np.abs(colour.super_resolve(up, img, 3, np.uint8).astype(int) - whole)
    assert len(bands) > 1 and diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.fixture
def tiny_overhead(monkeypatch):
    """The engine's fixed allowance taken out, so that budgets of a few MB play out on small images as the
    default does on a photo."""
    monkeypatch.setattr(memory, "CHUNK_OVERHEAD", 0)
    monkeypatch.setattr(tiling, "CHUNK_OVERHEAD", 0)


@pytest.mark.parametrize(
    ("kind", "ext", "scale"), [("rgb", ".png", 4), ("rgba", ".png", 4), ("gray16", ".tif", 4), ("rgba", ".png", 3)]
)
def test_a_streamed_file_equals_the_one_held_whole(tmp_path, rng, tiny_overhead, kind, ext, scale):
    """Streaming changes where rows go, not what they are: the pixels of the output held whole but for the
    tiles' float rounding, alpha and 16 bits kept (the writer itself is exact, above)."""
    img = smooth_image(rng, 90, 70)
    if kind == "rgb":
        Image.fromarray((img * 255).astype(np.uint8)).save(tmp_path / "in.png")
    elif kind == "rgba":
        Image.fromarray((np.dstack([img, rng.random((90, 70))]) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    else:
        Image.fromarray((img[..., 0] * 65535).astype(np.uint16)).save(tmp_path / "in.png")
    up = lapsrn.load()
    channels, size = (1, 2) if kind == "gray16" else (3, 1)
    row = 70 * scale * scale * channels * size
    up.max_memory = up.least_memory(70, 2, 90 * 70 * (channels * size + 4), row) + (64 << 10)
    assert pictures.streamed(up, tmp_path / "in.png", tmp_path / f"s{ext}", scale)
    pictures.stream_file(up, tmp_path / "in.png", tmp_path / f"s{ext}", scale)
    up.max_memory = 1 << 30  # the output held whole
    pictures.write_outputs(pictures.upscale_outputs(up, tmp_path / "in.png", tmp_path / f"w{ext}", scale))
    a, b = read_image(tmp_path / f"s{ext}", samples=True), read_image(tmp_path / f"w{ext}", samples=True)
    assert a.pixels.shape[:2] == (90 * scale, 70 * scale) and a.bits == b.bits
    assert a.pixels.shape[2:] == (() if kind == "gray16" else (3,))
    diff = np.abs(a.pixels.astype(np.int64) - b.pixels)
    # the tiles' float rounding only: one level at most, which at 16 bits (1.5e-5 of the range) flips more pixels
    assert diff.max() <= 1 and (diff > 0).mean() < (0.01 if a.bits == 8 else 0.05)
    assert (a.alpha is None) == (kind != "rgba") and (a.alpha is None or np.array_equal(a.alpha, b.alpha))


def test_the_command_streams_a_large_output_within_its_budget(tmp_path, rng, tiny_overhead, capsys, monkeypatch):
    """`lapsrn upscale` takes the strip path by itself when the output cannot be held, and the file is the
    whole-image one but for the tiles' float rounding (at most one level)."""
    from lapsrn.cli import main

    Image.fromarray((smooth_image(rng, 90, 70) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    streamed, real = [], pictures.stream_file
    monkeypatch.setattr(pictures, "stream_file", lambda *a, **k: streamed.append(a[2]) or real(*a, **k))
    import lapsrn.batch

    monkeypatch.setattr(lapsrn.batch, "stream_file", pictures.stream_file)
    args = ["upscale", "-i", str(tmp_path / "in.png"), "-s", "4", "--quiet"]
    budget = (lapsrn.load().least_memory(70, 2, 90 * 70 * 7, 70 * 16 * 3) >> 10) + 64  # strips fit, whole does not
    assert main([*args, "-o", str(tmp_path / "s.png"), "--max-memory", f"{budget}K"]) == 0
    assert main([*args, "-o", str(tmp_path / "w.png")]) == 0
    assert streamed == [tmp_path / "s.png"]
    a, b = (np.asarray(Image.open(tmp_path / n), np.int16) for n in ("s.png", "w.png"))
    assert a.shape == (360, 280, 3) and np.abs(a - b).max() <= 1
    capsys.readouterr()


def test_a_tiff_past_4_gib_is_written_as_bigtiff(tmp_path, rng, monkeypatch):
    """tifffile cannot size a TIFF from rows it has not seen: past 4 GiB of samples the writer asks for BigTIFF
    (here the threshold lowered, so a small file takes that path and reads back)."""
    import tifffile

    from lapsrn import strips

    monkeypatch.setattr(strips, "BIGTIFF_BYTES", 0)
    px = (smooth_image(rng, 20, 30) * 65535).astype(np.uint16)
    write_strips(tmp_path / "a.tif", iter([px[:9], px[9:]]), px.shape, 16)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.is_bigtiff and np.array_equal(tif.asarray(), px)


def test_alpha_in_bands_equals_the_whole_plane(rng, monkeypatch):
    """The whole-image path's alpha, now resized a band of rows at a time, is the whole plane's bicubic."""
    from lapsrn import protocol as P
    from lapsrn.colour import quantize

    alpha = (rng.random((61, 37)) * 255).astype(np.uint8)
    from lapsrn import colour

    monkeypatch.setattr(colour, "BAND_PIXELS", 37 * 16 * 5)  # bands of 5 LR rows
    whole = quantize(np.clip(P.imresize(alpha / 255.0, 4), 0.0, 1.0), np.uint8)
    assert np.array_equal(pictures._alpha(alpha, 4, np.uint8), whole)
    assert np.array_equal(
        pictures._alpha(alpha, 3, np.uint8), quantize(np.clip(P.imresize(alpha / 255.0, 3), 0, 1), np.uint8)
    )


def test_a_folder_decides_with_the_whole_budget(tmp_path, rng, tiny_overhead, capsys):
    """While one image's outputs are written behind, the next runs on what they leave; an image that needs the
    whole budget waits for that write and is not refused (before: a JPEG output was, naming a budget never given)."""
    from lapsrn.cli import main

    (tmp_path / "in").mkdir()
    Image.fromarray((smooth_image(rng, 64, 64) * 255).astype(np.uint8)).save(tmp_path / "in" / "a.png")
    Image.fromarray((smooth_image(rng, 60, 50) * 255).astype(np.uint8)).save(tmp_path / "in" / "b.png")
    whole_b = 60 * 50 * (3 + 4) + 120 * 100 * 3  # its samples, Y plane and output
    budget = (lapsrn.load().least_memory(50, 1, whole_b) + 128 * 128 * 3 // 2) // 1024 + 1  # K: over by half a's output
    args = ["upscale", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-s", "2", "--ext", "jpg"]
    assert main([*args, "--max-memory", f"{budget}K"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "b.jpg"]
