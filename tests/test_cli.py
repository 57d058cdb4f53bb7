"""`lapsrn upscale` / `evaluate` as a user runs them: every input kind, every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lapsrn import protocol as P
from lapsrn.cli import main
from lapsrn.imaging import super_resolve
from lapsrn.inference import Upscaler
from lapsrn.models import MSLapSRN
from lapsrn.weights import save

from .conftest import shared_path, smooth_image


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small random MS-LapSRN: fast, and enough to test the plumbing."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "tiny.safetensors"
    save(MSLapSRN(depth=1, recursions=1, levels=3), path)
    return str(path)


def u8(img: np.ndarray) -> np.ndarray:
    return P.im2uint8(img)


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def test_upscale_equals_evaluate_code_path(tmp_path, rng, lapsrn_x4, capsys):
    lr = u8(smooth_image(rng, 24, 20))
    Image.fromarray(lr).save(tmp_path / "in.png")
    code, err = run(capsys, "upscale", "-i", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "-s", "4",
                    "-m", str(shared_path("weights", "official", "LapSRN_x4.mat")))
    assert code == 0, err
    got = np.asarray(Image.open(tmp_path / "out.png"))
    expected = P.im2uint8(super_resolve(Upscaler(lapsrn_x4), lr / 255.0, 4))  # what evaluate scores
    assert got.shape == (96, 80, 3)
    np.testing.assert_array_equal(got, expected)


def test_gray_stays_gray(tmp_path, rng, tiny_model, capsys):
    Image.fromarray(u8(smooth_image(rng, 16, 12, 1))).save(tmp_path / "g.png")
    assert run(capsys, "upscale", "-i", str(tmp_path / "g.png"), "-o", str(tmp_path / "o.png"), "-s", "2", "-m", tiny_model)[0] == 0
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "L" and out.size == (24, 32)


def test_alpha_is_upscaled_and_kept(tmp_path, rng, tiny_model, capsys):
    rgba = np.dstack([u8(smooth_image(rng, 16, 16)), np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert run(capsys, "upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "-s", "2", "-m", tiny_model)[0] == 0
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert out.shape == (32, 32, 4)
    expected_alpha = P.im2uint8(np.clip(P.imresize(rgba[..., 3] / 255.0, 2), 0, 1))
    np.testing.assert_array_equal(out[..., 3], expected_alpha)


def test_16bit_gray_in_gives_16bit_out(tmp_path, rng, tiny_model, capsys):
    img = (smooth_image(rng, 10, 14, 1) * 65535).astype(np.uint16)
    Image.fromarray(img).save(tmp_path / "d.png")
    assert run(capsys, "upscale", "-i", str(tmp_path / "d.png"), "-o", str(tmp_path / "o.png"), "-s", "2", "-m", tiny_model)[0] == 0
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert out.dtype == np.uint16 and out.shape == (20, 28)
    assert len(np.unique(out)) > 256  # really 16-bit precision, not 8-bit values scaled up


def test_exif_orientation_is_applied(tmp_path, rng, tiny_model, capsys):
    im = Image.fromarray(u8(smooth_image(rng, 10, 20)))  # 20 wide, 10 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    im.save(tmp_path / "r.jpg", exif=exif)
    assert run(capsys, "upscale", "-i", str(tmp_path / "r.jpg"), "-o", str(tmp_path / "o.png"), "-s", "2", "-m", tiny_model)[0] == 0
    assert Image.open(tmp_path / "o.png").size == (20, 40)  # displayed orientation: 10 wide, 20 high


@pytest.mark.parametrize("ext,fmt", [(".jpg", "JPEG"), (".webp", "WEBP"), (".tif", "TIFF"), (".bmp", "BMP"), (".png", "PNG")])
def test_output_format_follows_extension(tmp_path, rng, tiny_model, capsys, ext, fmt):
    Image.fromarray(u8(smooth_image(rng, 8, 8))).save(tmp_path / "c.png")
    assert run(capsys, "upscale", "-i", str(tmp_path / "c.png"), "-o", str(tmp_path / f"o{ext}"), "-s", "2", "-m", tiny_model)[0] == 0
    assert Image.open(tmp_path / f"o{ext}").format == fmt


def test_non_power_of_two_scale_resizes_down(tmp_path, rng, tiny_model, capsys):
    Image.fromarray(u8(smooth_image(rng, 10, 7))).save(tmp_path / "c.png")
    assert run(capsys, "upscale", "-i", str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"), "-s", "3", "-m", tiny_model)[0] == 0
    assert Image.open(tmp_path / "o.png").size == (21, 30)
    assert run(capsys, "upscale", "-i", str(tmp_path / "c.png"), "-o", str(tmp_path / "p.png"), "-s", "2.5", "-m", tiny_model)[0] == 0
    assert Image.open(tmp_path / "p.png").size == (18, 25)  # MATLAB: ceil(7 * 2.5), ceil(10 * 2.5)


def test_all_levels_from_one_pass(tmp_path, rng, tiny_model, capsys):
    Image.fromarray(u8(smooth_image(rng, 8, 6))).save(tmp_path / "c.png")
    assert run(capsys, "upscale", "-i", str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"), "-s", "8", "--all-levels", "-m", tiny_model)[0] == 0
    sizes = [Image.open(tmp_path / f"o_x{f}.png").size for f in (2, 4, 8)]
    assert sizes == [(12, 16), (24, 32), (48, 64)]
    # the x4 file equals a separate x4 run
    assert run(capsys, "upscale", "-i", str(tmp_path / "c.png"), "-o", str(tmp_path / "s4.png"), "-s", "4", "-m", tiny_model)[0] == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o_x4.png")), np.asarray(Image.open(tmp_path / "s4.png")))


def test_folder_recursive_and_skip_existing(tmp_path, rng, tiny_model, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for name in ("a.png", "b.jpg", "sub/c.png"):
        Image.fromarray(u8(smooth_image(rng, 8, 8))).save(src / name)
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert run(capsys, "upscale", "-i", str(src), "-o", str(out), "-s", "2", "-m", tiny_model)[0] == 0
    assert sorted(p.name for p in out.rglob("*.*")) == ["a.png", "b.jpg"]
    assert run(capsys, "upscale", "-i", str(src), "-o", str(out), "-s", "2", "--recursive", "-m", tiny_model)[0] == 0
    assert (out / "sub" / "c.png").exists()
    (out / "a.png").write_bytes(b"keep me")
    assert run(capsys, "upscale", "-i", str(src), "-o", str(out), "-s", "2", "--recursive", "--skip-existing", "-m", tiny_model)[0] == 0
    assert (out / "a.png").read_bytes() == b"keep me"


def test_folder_with_a_bad_image_reports_and_continues(tmp_path, rng, tiny_model, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(u8(smooth_image(rng, 8, 8))).save(src / "good.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, err = run(capsys, "upscale", "-i", str(src), "-o", str(tmp_path / "out"), "-s", "2", "-m", tiny_model)
    assert code == 1 and "1 of 2 images failed" in err
    assert (tmp_path / "out" / "good.png").exists() and not (tmp_path / "out" / "bad.png").exists()


def _bad_inputs(tmp_path, rng):
    good = tmp_path / "good.png"
    Image.fromarray(u8(smooth_image(rng, 8, 8))).save(good)
    data = good.read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("hello")
    return {
        "missing": ["-i", str(tmp_path / "nope.png")],
        "empty": ["-i", str(tmp_path / "empty.png")],
        "truncated": ["-i", str(tmp_path / "trunc.png")],
        "unsupported": ["-i", str(tmp_path / "text.png")],
        "scale<=1": ["-i", str(good), "-s", "1"],
        "scale negative": ["-i", str(good), "-s", "-2"],
        "scale absurd": ["-i", str(good), "-s", "1e9"],
        "scale nan": ["-i", str(good), "-s", "nan"],
        "bad extension": ["-i", str(good), "-o", str(tmp_path / "out.xyz")],
        "weights not a file": ["-i", str(good), "-m", str(tmp_path / "none.safetensors")],
        "weights wrong kind": ["-i", str(good), "-m", str(good)],
        "too big": ["-i", str(good), "-s", "64", "--max-memory", "1K"],
    }


BAD_CASES = ["missing", "empty", "truncated", "unsupported", "scale<=1", "scale negative", "scale absurd",
             "scale nan", "bad extension", "weights not a file", "weights wrong kind", "too big"]


def exit_code(args: list[str]) -> int:
    """main()'s status, including argparse's usage errors (raised as SystemExit)."""
    try:
        return main(args)
    except SystemExit as e:
        return int(e.code or 0)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_nonzero_and_no_output(tmp_path, rng, tiny_model, capsys, case):
    args = _bad_inputs(tmp_path, rng)[case]
    out = tmp_path / "out.png"
    if "-o" not in args:
        args = [*args, "-o", str(out)]
    if "-m" not in args:
        args = [*args, "-m", tiny_model]
    out.write_bytes(b"previous result")  # an existing output must survive a failure
    code = exit_code(["upscale", *args])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and "Traceback" not in err and "error" in err, err
    assert out.read_bytes() == b"previous result"
    assert not list(tmp_path.glob(".*.tmp"))


def test_output_too_large_for_memory_is_refused(tmp_path, rng, tiny_model, capsys, monkeypatch):
    import lapsrn.upscale as U

    monkeypatch.setattr(U, "memory_limit", lambda: 1 << 20)
    Image.fromarray(u8(smooth_image(rng, 64, 64))).save(tmp_path / "c.png")
    code, err = run(capsys, "upscale", "-i", str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"), "-s", "8", "-m", tiny_model)
    assert code == 1 and "would need about" in err and not (tmp_path / "o.png").exists()


def test_evaluate_prints_table_and_json(tmp_path, rng, tiny_model, capsys):
    data = tmp_path / "set"
    data.mkdir()
    for i in range(2):
        Image.fromarray(u8(smooth_image(rng, 24, 32))).save(data / f"{i}.png")
    code = main(["evaluate", "-m", tiny_model, "-d", str(data), "-s", "2", "-s", "4", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("| set | x") == 4 and "bicubic" in out
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [(r["scale"], r["method"]) for r in rows] == [(2, "bicubic"), (2, "tiny.safetensors"), (4, "bicubic"), (4, "tiny.safetensors")]
    assert len(rows[0]["per_image"]) == 2 and rows[0]["psnr"] > 20


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_colour_in_gives_16bit_colour_out(tmp_path, rng, tiny_model, capsys, ext):
    import tifffile

    from lapsrn.io import Picture, read_image, write_image

    img = smooth_image(rng, 10, 12)
    write_image(Picture(img, None, 16), tmp_path / f"c{ext}")
    back = read_image(tmp_path / f"c{ext}")
    assert back.bits == 16 and np.abs(back.pixels - img).max() <= 0.5 / 65535 + 1e-12  # 16-bit exact
    assert run(capsys, "upscale", "-i", str(tmp_path / f"c{ext}"), "-o", str(tmp_path / f"o{ext}"), "-s", "2", "-m", tiny_model)[0] == 0
    out = read_image(tmp_path / f"o{ext}")
    assert out.bits == 16 and out.pixels.shape == (20, 24, 3)
    if ext == ".tif":
        assert tifffile.imread(tmp_path / "o.tif").dtype == np.uint16
    else:
        assert Image.open(tmp_path / "o.png").mode == "RGB"  # Pillow can open it; its IHDR says 16 bits
        assert (tmp_path / "o.png").read_bytes()[24] == 16


def test_outputs_get_normal_permissions(tmp_path, rng, tiny_model, capsys):
    import os
    import stat

    Image.fromarray(u8(smooth_image(rng, 8, 8))).save(tmp_path / "c.png")
    old = os.umask(0o022)
    try:
        assert run(capsys, "upscale", "-i", str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"), "-s", "2", "-m", tiny_model)[0] == 0
        from lapsrn.weights import load, save

        save(load(tiny_model)[0], tmp_path / "w.safetensors")  # safetensors recreates its file: still 0644
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.png").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o644
