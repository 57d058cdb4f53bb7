"""`lapsrn upscale` / `evaluate` as a user runs them: every input kind, every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lapsrn import protocol as P
from lapsrn.api import Upscaler
from lapsrn.cli import main
from lapsrn.colour import super_resolve
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
    code, err = run(
        capsys,
        "upscale",
        "-i",
        str(tmp_path / "in.png"),
        "-o",
        str(tmp_path / "out.png"),
        "-s",
        "4",
        "-m",
        str(shared_path("weights", "official", "LapSRN_x4.mat")),
    )
    assert code == 0, err
    got = np.asarray(Image.open(tmp_path / "out.png"))
    expected = P.im2uint8(super_resolve(Upscaler(lapsrn_x4), lr / 255.0, 4))  # what evaluate scores
    assert got.shape == (96, 80, 3)
    # the engine's own tolerance between paths: at most one 8-bit level on at most 0.1 % of pixels
    diff = np.abs(got.astype(int) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3


def test_gray_stays_gray(tmp_path, rng, tiny_model, capsys):
    Image.fromarray(u8(smooth_image(rng, 16, 12, 1))).save(tmp_path / "g.png")
    assert (
        run(
            capsys, "upscale", "-i", str(tmp_path / "g.png"), "-o", str(tmp_path / "o.png"), "-s", "2", "-m", tiny_model
        )[0]
        == 0
    )
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "L" and out.size == (24, 32)


def test_alpha_is_upscaled_and_kept(tmp_path, rng, tiny_model, capsys):
    rgba = np.dstack([u8(smooth_image(rng, 16, 16)), np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert (
        run(
            capsys, "upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "-s", "2", "-m", tiny_model
        )[0]
        == 0
    )
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert out.shape == (32, 32, 4)
    expected_alpha = P.im2uint8(np.clip(P.imresize(rgba[..., 3] / 255.0, 2), 0, 1))
    np.testing.assert_array_equal(out[..., 3], expected_alpha)


def test_16bit_gray_in_gives_16bit_out(tmp_path, rng, tiny_model, capsys):
    img = (smooth_image(rng, 10, 14, 1) * 65535).astype(np.uint16)
    Image.fromarray(img).save(tmp_path / "d.png")
    assert (
        run(
            capsys, "upscale", "-i", str(tmp_path / "d.png"), "-o", str(tmp_path / "o.png"), "-s", "2", "-m", tiny_model
        )[0]
        == 0
    )
    import png  # the file's own bit depth: Pillow 10 reads 16-bit gray as 32-bit "I", Pillow 11+ as "I;16"

    _, _, rows, info = png.Reader(filename=str(tmp_path / "o.png")).read()
    out = np.vstack([np.asarray(r) for r in rows])
    assert info["bitdepth"] == 16 and info["greyscale"] and out.shape == (20, 28)
    assert len(np.unique(out)) > 256  # really 16-bit precision, not 8-bit values scaled up


def test_exif_orientation_is_applied(tmp_path, rng, tiny_model, capsys):
    im = Image.fromarray(u8(smooth_image(rng, 10, 20)))  # 20 wide, 10 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    im.save(tmp_path / "r.jpg", exif=exif)
    assert (
        run(
            capsys, "upscale", "-i", str(tmp_path / "r.jpg"), "-o", str(tmp_path / "o.png"), "-s", "2", "-m", tiny_model
        )[0]
        == 0
    )
    assert Image.open(tmp_path / "o.png").size == (20, 40)  # displayed orientation: 10 wide, 20 high


@pytest.mark.parametrize(
    "ext,fmt", [(".jpg", "JPEG"), (".webp", "WEBP"), (".tif", "TIFF"), (".bmp", "BMP"), (".png", "PNG")]
)
def test_output_format_follows_extension(tmp_path, rng, tiny_model, capsys, ext, fmt):
    Image.fromarray(u8(smooth_image(rng, 8, 8))).save(tmp_path / "c.png")
    assert (
        run(
            capsys,
            "upscale",
            "-i",
            str(tmp_path / "c.png"),
            "-o",
            str(tmp_path / f"o{ext}"),
            "-s",
            "2",
            "-m",
            tiny_model,
        )[0]
        == 0
    )
    assert Image.open(tmp_path / f"o{ext}").format == fmt


def test_non_power_of_two_scale_resizes_down(tmp_path, rng, tiny_model, capsys):
    Image.fromarray(u8(smooth_image(rng, 10, 7))).save(tmp_path / "c.png")
    assert (
        run(
            capsys, "upscale", "-i", str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"), "-s", "3", "-m", tiny_model
        )[0]
        == 0
    )
    assert Image.open(tmp_path / "o.png").size == (21, 30)
    assert (
        run(
            capsys,
            "upscale",
            "-i",
            str(tmp_path / "c.png"),
            "-o",
            str(tmp_path / "p.png"),
            "-s",
            "2.5",
            "-m",
            tiny_model,
        )[0]
        == 0
    )
    assert Image.open(tmp_path / "p.png").size == (18, 25)  # MATLAB: ceil(7 * 2.5), ceil(10 * 2.5)


def test_all_levels_from_one_pass(tmp_path, rng, tiny_model, capsys):
    Image.fromarray(u8(smooth_image(rng, 8, 6))).save(tmp_path / "c.png")
    assert (
        run(
            capsys,
            "upscale",
            "-i",
            str(tmp_path / "c.png"),
            "-o",
            str(tmp_path / "o.png"),
            "-s",
            "8",
            "--all-levels",
            "-m",
            tiny_model,
        )[0]
        == 0
    )
    sizes = [Image.open(tmp_path / f"o_x{f}.png").size for f in (2, 4, 8)]
    assert sizes == [(12, 16), (24, 32), (48, 64)]
    # the x4 file equals a separate x4 run
    assert (
        run(
            capsys,
            "upscale",
            "-i",
            str(tmp_path / "c.png"),
            "-o",
            str(tmp_path / "s4.png"),
            "-s",
            "4",
            "-m",
            tiny_model,
        )[0]
        == 0
    )
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "o_x4.png")), np.asarray(Image.open(tmp_path / "s4.png"))
    )


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
    assert (
        run(
            capsys,
            "upscale",
            "-i",
            str(src),
            "-o",
            str(out),
            "-s",
            "2",
            "--recursive",
            "--skip-existing",
            "-m",
            tiny_model,
        )[0]
        == 0
    )
    assert (out / "a.png").read_bytes() == b"keep me"


def test_folder_with_a_bad_image_reports_and_continues(tmp_path, rng, tiny_model, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(u8(smooth_image(rng, 8, 8))).save(src / "good.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, err = run(capsys, "upscale", "-i", str(src), "-o", str(tmp_path / "out"), "-s", "2", "-m", tiny_model)
    assert code == 1 and "1 of 2 images failed" in err
    assert (tmp_path / "out" / "good.png").exists() and not (tmp_path / "out" / "bad.png").exists()


def test_folder_writes_each_image_while_the_next_is_upscaled(tmp_path, rng, tiny_model, capsys, monkeypatch):
    """Small outputs are written on the writer thread, one image behind the network, never more; a write that
    fails is reported for its image and the others are written; large outputs are written at once."""
    import threading

    import lapsrn.batch as U
    from lapsrn.io import ImageError

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        Image.fromarray(u8(smooth_image(rng, 8, 8))).save(src / f"{i}.png")
    events, real_upscale, real_write = [], U.upscale_outputs, U.write_outputs

    def upscale(upscaler, path, *args):
        events.append(("upscale", path.name, threading.current_thread().name))
        return real_upscale(upscaler, path, *args)

    def write(outputs, *args):
        name = outputs[0][1].name
        events.append(("write", name, threading.current_thread().name))
        if name == "1.png":
            raise ImageError(f"{outputs[0][1]}: cannot write (disk full)")
        return real_write(outputs, *args)

    monkeypatch.setattr(U, "upscale_outputs", upscale)
    monkeypatch.setattr(U, "write_outputs", write)
    out = tmp_path / "out"
    code, err = run(capsys, "upscale", "-i", str(src), "-o", str(out), "-s", "2", "-m", tiny_model)
    assert code == 1 and "3 written, 0 skipped (already there), 1 of 4 images failed" in err, err
    assert f"skipped {src / '1.png'}: {out / '1.png'}: cannot write (disk full)" in err
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "2.png", "3.png"]
    assert all(thread.startswith("lapsrn-write") for kind, _, thread in events if kind == "write")
    for i, (kind, name, _) in enumerate(events):  # image n is written after n + 1 is upscaled, before n + 2
        if kind == "upscale":
            n = int(name[0])
            written_before = {int(e[1][0]) for e in events[:i] if e[0] == "write"}
            assert written_before >= set(range(n - 1)), events
    sizes = {e[1] for e in events}
    assert len(sizes) == 4
    events.clear()
    monkeypatch.setattr(U, "WRITE_BEHIND_BYTES", 0)
    code, err = run(capsys, "upscale", "-i", str(src), "-o", str(tmp_path / "out2"), "-s", "2", "-m", tiny_model)
    assert code == 1 and all(thread == "MainThread" for kind, _, thread in events if kind == "write"), events


def test_folder_write_behind_leaves_room_in_the_budget_and_keeps_reports_in_order(
    tmp_path, rng, tiny_model, capsys, monkeypatch
):
    """While one image's outputs wait to be written, the next image runs with that many bytes less; a failure
    of the next image is reported after the waiting one's "wrote" line."""
    import lapsrn.batch as U
    from lapsrn.io import ImageError

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(u8(smooth_image(rng, 8, 8))).save(src / f"{i}.png")
    budgets, real = [], U.upscale_outputs

    def upscale(upscaler, path, *args):
        budgets.append(upscaler.max_memory)
        if path.name == "1.png":
            raise ImageError(f"{path}: broken")
        return real(upscaler, path, *args)

    monkeypatch.setattr(U, "upscale_outputs", upscale)
    out = tmp_path / "out"
    code, err = run(
        capsys, "upscale", "-i", str(src), "-o", str(out), "-s", "2", "-m", tiny_model, "--max-memory", "128M"
    )
    output = 16 * 16 * 3  # one 16x16 RGB uint8 output
    assert code == 1 and budgets == [128 << 20, (128 << 20) - output, 128 << 20], budgets
    lines = [line for line in err.splitlines() if "wrote" in line or "skipped" in line]
    assert lines[:2] == [f"wrote {out / '0.png'}", f"lapsrn: skipped {src / '1.png'}: {src / '1.png'}: broken"], err


def test_folder_stopped_while_a_write_is_pending_finishes_and_reports_it(
    tmp_path, rng, tiny_model, capsys, monkeypatch
):
    """SIGTERM during the next image: the image being written meanwhile is written whole and reported, then the
    run ends like Ctrl-C, leaving no temp file."""
    import os
    import signal

    import lapsrn.batch as U

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(u8(smooth_image(rng, 8, 8))).save(src / f"{i}.png")
    real = U.upscale_outputs

    def upscale(upscaler, path, *args):
        if path.name == "1.png":
            os.kill(os.getpid(), signal.SIGTERM)
        return real(upscaler, path, *args)

    monkeypatch.setattr(U, "upscale_outputs", upscale)
    out = tmp_path / "out"
    code, err = run(capsys, "upscale", "-i", str(src), "-o", str(out), "-s", "2", "-m", tiny_model)
    assert code == 130 and "lapsrn: interrupted" in err and f"wrote {out / '0.png'}" in err, err
    assert [p.name for p in out.iterdir()] == ["0.png"] and Image.open(out / "0.png").size == (16, 16)


def _bad_inputs(tmp_path, rng):
    good = tmp_path / "good.png"
    Image.fromarray(u8(smooth_image(rng, 8, 8))).save(good)
    data = good.read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("hello")
    return {  # case: (arguments, what the one error line must say)
        "missing": (["-i", str(tmp_path / "nope.png")], "nope.png: no such file or folder"),
        "empty": (["-i", str(tmp_path / "empty.png")], "empty.png: empty file"),
        "truncated": (["-i", str(tmp_path / "trunc.png")], "trunc.png: cannot decode image"),
        "unsupported": (["-i", str(tmp_path / "text.png")], "text.png: not an image file"),
        "scale<=1": (["-i", str(good), "-s", "1"], "scale must be greater than 1, got 1"),
        "scale negative": (["-i", str(good), "-s", "-2"], "scale must be greater than 1, got -2"),
        "scale absurd": (["-i", str(good), "-s", "1e9"], "is too large"),
        "scale nan": (["-i", str(good), "-s", "nan"], "scale must be greater than 1, got nan"),
        "bad extension": (["-i", str(good), "-o", str(tmp_path / "out.xyz")], "out.xyz: unsupported output extension"),
        "weights not a file": (
            ["-i", str(good), "-m", str(tmp_path / "none.safetensors")],
            "none.safetensors: no such weights file",
        ),
        "weights wrong kind": (["-i", str(good), "-m", str(good)], "good.png"),
        "max-memory too small": (
            ["-i", str(good), "-s", "64", "--max-memory", "1K"],
            "--max-memory 1K is too small for x64 of a 8x8 image: give a larger one, at least",
        ),
        "max-memory without unit": (["-i", str(good), "--max-memory", "1500"], "not a memory size with a unit: '1500'"),
        "shard out of range": (["-i", str(good), "--shard", "3/3"], "--shard must be K/N with 0 <= K < N"),
        "shard not K/N": (["-i", str(good), "--shard", "two"], "--shard must be K/N"),
        "quality 0": (["-i", str(good), "--quality", "0"], "--quality must be an integer from 1 to 100, got '0'"),
        "png compression 10": (
            ["-i", str(good), "--png-compression", "10"],
            "--png-compression must be an integer from 0 to 9",
        ),
        "unknown ext": (["-i", str(good), "--ext", "gif"], "argument --ext: invalid choice: 'gif'"),
        "ext for one file": (["-i", str(good), "--ext", "jpg"], "--ext and --suffix name folder outputs"),
    }


BAD_CASES = [
    "missing",
    "empty",
    "truncated",
    "unsupported",
    "scale<=1",
    "scale negative",
    "scale absurd",
    "scale nan",
    "bad extension",
    "weights not a file",
    "weights wrong kind",
    "max-memory too small",
    "max-memory without unit",
    "shard out of range",
    "shard not K/N",
    "quality 0",
    "png compression 10",
    "unknown ext",
    "ext for one file",
]


def exit_code(args: list[str]) -> int:
    """main()'s status, including argparse's usage errors (raised as SystemExit)."""
    try:
        return main(args)
    except SystemExit as e:
        return int(e.code or 0)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_nonzero_and_no_output(tmp_path, rng, tiny_model, capsys, case):
    args, message = _bad_inputs(tmp_path, rng)[case]
    out = tmp_path / "out.png"
    if "-o" not in args:
        args = [*args, "-o", str(out)]
    if "-m" not in args:
        args = [*args, "-m", tiny_model]
    out.write_bytes(b"previous result")  # an existing output must survive a failure
    code = exit_code(["upscale", *args])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and "Traceback" not in err and "error" in err and message in err, err
    assert out.read_bytes() == b"previous result"
    assert not list(tmp_path.glob(".*.tmp"))


def test_output_too_large_for_memory_is_refused(tmp_path, rng, tiny_model, capsys, monkeypatch):
    import lapsrn.pictures as U

    monkeypatch.setattr(U, "memory_limit", lambda: 1 << 20)
    Image.fromarray(u8(smooth_image(rng, 64, 64))).save(tmp_path / "c.png")
    code, err = run(
        capsys, "upscale", "-i", str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"), "-s", "8", "-m", tiny_model
    )
    assert code == 1 and "would need about" in err and not (tmp_path / "o.png").exists()


def test_evaluate_prints_table_and_json(tmp_path, rng, tiny_model, capsys):
    data = tmp_path / "set"
    data.mkdir()
    for i in range(2):
        Image.fromarray(u8(smooth_image(rng, 24, 32))).save(data / f"{i}.png")
    code = main(
        ["evaluate", "-m", tiny_model, "-d", str(data), "-s", "2", "-s", "4", "--json", str(tmp_path / "r.json")]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0
    assert "lapsrn: table cells: PSNR (dB) / SSIM" in captured.err  # what the cells hold, beside the table
    lines = out.splitlines()
    assert lines[0] == "| method | scale | set |" and [line.split(" | ")[:2] for line in lines[2:]] == [
        ["| bicubic", "x2"],
        ["| tiny.safetensors", "x2"],
        ["| bicubic", "x4"],
        ["| tiny.safetensors", "x4"],
    ]
    assert (
        sum("**" in line for line in lines[2:4]) == 1 and sum("**" in line for line in lines[4:6]) == 1
    )  # best per scale
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [(r["scale"], r["method"]) for r in rows] == [
        (2, "bicubic"),
        (2, "tiny.safetensors"),
        (4, "bicubic"),
        (4, "tiny.safetensors"),
    ]
    assert len(rows[0]["per_image"]) == 2 and rows[0]["psnr"] > 20


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_colour_in_gives_16bit_colour_out(tmp_path, rng, tiny_model, capsys, ext):
    import tifffile

    from lapsrn.io import Picture, read_image, write_image

    img = smooth_image(rng, 10, 12)
    write_image(Picture(img, None, 16), tmp_path / f"c{ext}")
    back = read_image(tmp_path / f"c{ext}")
    assert back.bits == 16 and np.abs(back.pixels - img).max() <= 0.5 / 65535 + 1e-12  # 16-bit exact
    assert (
        run(
            capsys,
            "upscale",
            "-i",
            str(tmp_path / f"c{ext}"),
            "-o",
            str(tmp_path / f"o{ext}"),
            "-s",
            "2",
            "-m",
            tiny_model,
        )[0]
        == 0
    )
    out = read_image(tmp_path / f"o{ext}")
    assert out.bits == 16 and out.pixels.shape == (20, 24, 3)
    if ext == ".tif":
        assert tifffile.imread(tmp_path / "o.tif").dtype == np.uint16
    else:
        assert Image.open(tmp_path / "o.png").mode == "RGB"  # Pillow can open it; its IHDR says 16 bits
        assert (tmp_path / "o.png").read_bytes()[24] == 16


def test_umask_is_read_without_being_changed():
    """The writer thread reads the umask while the main thread makes folders: reading must not set it."""
    import os

    from lapsrn.io import _umask

    old = os.umask(0o027)
    try:
        assert _umask() == 0o027 and _umask() == 0o027
    finally:
        os.umask(old)


def test_outputs_get_normal_permissions(tmp_path, rng, tiny_model, capsys):
    import os
    import stat

    Image.fromarray(u8(smooth_image(rng, 8, 8))).save(tmp_path / "c.png")
    old = os.umask(0o022)
    try:
        assert (
            run(
                capsys,
                "upscale",
                "-i",
                str(tmp_path / "c.png"),
                "-o",
                str(tmp_path / "o.png"),
                "-s",
                "2",
                "-m",
                tiny_model,
            )[0]
            == 0
        )
        from lapsrn.weights import load, save

        save(load(tiny_model)[0], tmp_path / "w.safetensors")  # safetensors recreates its file: still 0644
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.png").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o644


def _png(path, rng, h=8, w=8):
    Image.fromarray(u8(smooth_image(rng, h, w))).save(path)
    return path


@pytest.mark.parametrize("how", ["same path", "hard link", "folder onto itself", "folder output is an input"])
def test_output_that_is_an_input_is_refused_unless_overwrite(tmp_path, rng, tiny_model, capsys, how):
    import os

    src = tmp_path / "in"
    src.mkdir()
    photo = _png(src / "a.png", rng)
    original = photo.read_bytes()
    if how == "same path":
        args = ["-i", str(photo), "-o", str(tmp_path / "in" / ".." / "in" / "a.png")]
    elif how == "hard link":
        os.link(photo, tmp_path / "link.png")
        args = ["-i", str(tmp_path / "link.png"), "-o", str(photo)]
    elif how == "folder onto itself":
        args = ["-i", str(src), "-o", str(tmp_path / "." / "in")]
    else:  # out/a.png is a hard link to in/a.png
        (tmp_path / "out").mkdir()
        os.link(photo, tmp_path / "out" / "a.png")
        args = ["-i", str(src), "-o", str(tmp_path / "out")]
    code, err = run(capsys, "upscale", *args, "-s", "2", "-m", tiny_model)
    assert code == 1 and err.count("\n") == 1 and "--overwrite" in err, err
    assert photo.read_bytes() == original
    assert run(capsys, "upscale", *args, "-s", "2", "-m", tiny_model, "--overwrite")[0] == 0
    written = tmp_path / "out" / "a.png" if how == "folder output is an input" else photo
    assert Image.open(written).size == (16, 16)


def test_stale_temp_files_of_a_dead_run_are_removed_and_never_outputs(tmp_path, rng, tiny_model, capsys):
    import os
    import subprocess
    import sys

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    _png(src / "a.png", rng)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    stale = out / f".a.png.lapsrn-{int(dead.stdout)}-abc123.tmp"  # what SIGKILL leaves behind
    live = out / f".a.png.lapsrn-{os.getppid()}-def456.tmp"  # another run still writing: left alone
    stale.write_bytes(b"half")
    live.write_bytes(b"busy")
    code, err = run(capsys, "upscale", "-i", str(src), "-o", str(out), "-s", "2", "--skip-existing", "-m", tiny_model)
    assert code == 0 and "1 written, 0 skipped" in err, err  # the temp file did not count as a.png
    assert not stale.exists() and live.exists() and (out / "a.png").exists()


def test_sigterm_is_handled_like_ctrl_c(tmp_path, rng, tiny_model, capsys, monkeypatch):
    import os
    import signal

    import lapsrn.batch as U
    from lapsrn.io import atomic_path

    def killed_while_writing(outputs, *args):
        with atomic_path(outputs[0][1]) as tmp:
            tmp.write_bytes(b"half an image")
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(U, "write_outputs", killed_while_writing)
    before = signal.getsignal(signal.SIGTERM)
    code, err = run(
        capsys, "upscale", "-i", str(_png(tmp_path / "a.png", rng)), "-o", str(tmp_path / "o.png"), "-m", tiny_model
    )
    assert code == 130 and err == "lapsrn: interrupted\n"
    assert not (tmp_path / "o.png").exists() and not list(tmp_path.glob(".*.tmp"))
    assert signal.getsignal(signal.SIGTERM) is before


def test_non_finite_float_tiff_is_refused_naming_the_file(tmp_path, tiny_model, capsys):
    import tifffile

    img = np.full((8, 8, 3), 0.5, np.float32)
    img[3, 4, 1] = np.nan
    tifffile.imwrite(tmp_path / "n.tif", img, photometric="rgb")
    code, err = run(capsys, "upscale", "-i", str(tmp_path / "n.tif"), "-o", str(tmp_path / "o.png"), "-m", tiny_model)
    assert code == 1 and f"{tmp_path / 'n.tif'}: image has NaN or infinite samples" in err, err


def _folder(tmp_path, rng, n=7):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    names = [f"{i}.png" for i in range(n)] + ["sub/x.png"]
    for name in names:
        _png(src / name, rng, 6, 6)
    return src, names


def test_shards_cover_every_file_exactly_once(tmp_path, rng, tiny_model, capsys):
    src, names = _folder(tmp_path, rng)
    seen = []
    for k in range(3):
        out = tmp_path / f"out{k}"
        assert (
            run(
                capsys,
                "upscale",
                "-i",
                str(src),
                "-o",
                str(out),
                "--recursive",
                "--shard",
                f"{k}/3",
                "-s",
                "2",
                "-m",
                tiny_model,
            )[0]
            == 0
        )
        seen += [p.relative_to(out).as_posix() for p in out.rglob("*.png")]
    assert sorted(seen) == sorted(names)
    # a rerun of one shard into one folder with --skip-existing writes nothing again
    out = tmp_path / "out0"
    code, err = run(
        capsys,
        "upscale",
        "-i",
        str(src),
        "-o",
        str(out),
        "--recursive",
        "--shard",
        "0/3",
        "--skip-existing",
        "-s",
        "2",
        "-m",
        tiny_model,
    )
    assert code == 0 and f"0 written, {len(list(out.rglob('*.png')))} skipped" in err, err


def test_shard_from_rank_and_world_size_and_the_flag_wins(tmp_path, rng, tiny_model, capsys, monkeypatch):
    src, names = _folder(tmp_path, rng)
    monkeypatch.setenv("WORLD_SIZE", "2")
    outs = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        out = tmp_path / f"r{rank}"
        assert (
            run(capsys, "upscale", "-i", str(src), "-o", str(out), "--recursive", "-s", "2", "-m", tiny_model)[0] == 0
        )
        outs.append(sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")))
    assert sorted(outs[0] + outs[1]) == sorted(names) and outs[0] and outs[1]
    out = tmp_path / "flag"
    assert (
        run(
            capsys,
            "upscale",
            "-i",
            str(src),
            "-o",
            str(out),
            "--recursive",
            "--shard",
            "0/2",
            "-s",
            "2",
            "-m",
            tiny_model,
        )[0]
        == 0
    )
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == outs[0]  # RANK=1 set, flag says 0
    monkeypatch.setenv("RANK", "2")
    code, err = run(capsys, "upscale", "-i", str(src), "-o", str(out), "-s", "2", "-m", tiny_model)
    assert code == 1 and "RANK=2 WORLD_SIZE=2: need 0 <= RANK < WORLD_SIZE" in err


def test_ext_suffix_quality(tmp_path, rng, tiny_model, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(u8(smooth_image(rng, 32, 32))).save(src / "a.png")
    for q in ("10", "95"):
        out = tmp_path / f"q{q}"
        code, err = run(
            capsys,
            "upscale",
            "-i",
            str(src),
            "-o",
            str(out),
            "--ext",
            "jpg",
            "--suffix",
            "_x2",
            "--quality",
            q,
            "-s",
            "2",
            "-m",
            tiny_model,
        )
        assert code == 0 and f"wrote {out / 'a_x2.jpg'}" in err, err
        assert Image.open(out / "a_x2.jpg").format == "JPEG"
    assert (tmp_path / "q10" / "a_x2.jpg").stat().st_size < (tmp_path / "q95" / "a_x2.jpg").stat().st_size
    assert (
        run(capsys, "upscale", "-i", str(src), "-o", str(tmp_path / "w"), "--ext", "webp", "-s", "2", "-m", tiny_model)[
            0
        ]
        == 0
    )
    assert Image.open(tmp_path / "w" / "a.webp").format == "WEBP"


def test_png_compression_level_is_used(tmp_path, rng, tiny_model, capsys):
    Image.fromarray(u8(smooth_image(rng, 48, 48))).save(tmp_path / "a.png")
    sizes = []
    for level in ("0", "9"):
        assert (
            run(
                capsys,
                "upscale",
                "-i",
                str(tmp_path / "a.png"),
                "-o",
                str(tmp_path / f"o{level}.png"),
                "--png-compression",
                level,
                "-s",
                "2",
                "-m",
                tiny_model,
            )[0]
            == 0
        )
        sizes.append((tmp_path / f"o{level}.png").stat().st_size)
    assert sizes[0] > 96 * 96 * 3 > sizes[1]  # level 0 stores raw rows


def test_icc_and_exif_are_kept_with_orientation_reset(tmp_path, rng, tiny_model, capsys):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera maker"
    Image.fromarray(u8(smooth_image(rng, 10, 20))).save(tmp_path / "a.jpg", icc_profile=icc, exif=exif)
    for ext in ("jpg", "png", "webp"):
        assert (
            run(
                capsys,
                "upscale",
                "-i",
                str(tmp_path / "a.jpg"),
                "-o",
                str(tmp_path / f"o.{ext}"),
                "-s",
                "2",
                "-m",
                tiny_model,
            )[0]
            == 0
        )
        out = Image.open(tmp_path / f"o.{ext}")
        assert out.size == (20, 40) and out.info.get("icc_profile") == icc
        assert out.getexif()[0x0112] == 1 and out.getexif()[0x010F] == "Camera maker"


def test_all_levels_with_a_non_power_of_two_scale_writes_that_scale_too(tmp_path, rng, tiny_model, capsys):
    _png(tmp_path / "c.png", rng, 8, 6)
    assert (
        run(
            capsys,
            "upscale",
            "-i",
            str(tmp_path / "c.png"),
            "-o",
            str(tmp_path / "o.png"),
            "-s",
            "3",
            "--all-levels",
            "-m",
            tiny_model,
        )[0]
        == 0
    )
    assert sorted(p.name for p in tmp_path.glob("o*")) == ["o_x2.png", "o_x3.png"]
    assert Image.open(tmp_path / "o_x3.png").size == (18, 24)
    assert (
        run(
            capsys, "upscale", "-i", str(tmp_path / "c.png"), "-o", str(tmp_path / "p.png"), "-s", "3", "-m", tiny_model
        )[0]
        == 0
    )
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "o_x3.png")), np.asarray(Image.open(tmp_path / "p.png"))
    )


def test_bundled_model_names_any_case_and_default(tmp_path, rng, capsys):
    from lapsrn.weights import resolve_model_name

    assert (
        resolve_model_name(None)
        == resolve_model_name("Default")
        == resolve_model_name("MSLAPSRN_D5R2")
        == "mslapsrn_d5r2"
    )
    assert resolve_model_name("my.safetensors") == __import__("pathlib").Path("my.safetensors")
    photo = _png(tmp_path / "a.png", rng)
    for name in ("default", "MSLapSRN_D5R2"):
        assert run(capsys, "upscale", "-i", str(photo), "-o", str(tmp_path / "o.png"), "-s", "2", "-m", name)[0] == 0


def test_a_large_single_image_shows_progress_over_the_whole_pass(tmp_path, rng, capsys, monkeypatch):
    """One image's bar counts LR rows through every level and tile (composed as they come), says 'writing'
    while a whole output is encoded, and is gone when the 'wrote' line comes; a quick image shows none."""
    from lapsrn import commands

    Image.fromarray(u8(smooth_image(rng, 150, 200))).save(tmp_path / "big.png")
    args = ["upscale", "-i", str(tmp_path / "big.png"), "-o", str(tmp_path / "out.png"), "-s", "4", "--overwrite"]
    monkeypatch.setattr(commands, "BAR_DELAY", 0.0)
    for budget in ("80M", "672M"):  # tiles; one pass whose last level runs in bands
        code, err = run(capsys, *args, "--max-memory", budget)
        assert code == 0, err
        assert "upscaling:" in err and "/150 " in err and "row" in err
        assert err.rstrip().endswith(f"wrote {tmp_path / 'out.png'}")
    monkeypatch.setattr(commands, "BAR_DELAY", 60.0)
    code, err = run(capsys, *args)
    assert code == 0 and "upscaling" not in err and "writing" not in err


def test_models_lists_the_bundled_models_with_their_facts(capsys):
    from lapsrn.weights import DEFAULT_MODEL, bundled_names

    assert main(["models"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("| name | for | architecture | parameters |")
    rows = {r.split("|")[1].strip(): r for r in out[2:]}
    assert len(rows) == len(bundled_names())
    default = rows[f"{DEFAULT_MODEL} (default)"]
    assert "MSLapSRN D5R2 SS" in default and "222,801" in default and "x2, x4, x8" in default
    assert "31.26 dB" in default  # the Set5 x4 PSNR on its card


@pytest.mark.parametrize("name", ["default", "real", "gan"])
def test_the_three_bundled_models_work_by_name_everywhere(name, tmp_path, rng, capsys):
    """`-m NAME` in upscale and evaluate, lapsrn.load(NAME): sha256-checked bundled files, listed by `models`."""
    import lapsrn
    from lapsrn.weights import bundled_card, resolve, resolve_model_name, sha256

    bundled = resolve_model_name(name)
    assert isinstance(bundled, str)  # a bundled model, not a path
    card = bundled_card(bundled)
    assert sha256(resolve(name)) == card["sha256"] and "no official weights" in card["training_data"]
    assert card["metrics"]  # scored by its evaluation script before bundling
    photo = _png(tmp_path / "a.png", rng, 12, 10)
    assert run(capsys, "upscale", "-i", str(photo), "-o", str(tmp_path / "o.png"), "-s", "4", "-m", name)[0] == 0
    assert Image.open(tmp_path / "o.png").size == (40, 48)
    lr = rng.random((10, 12))
    np.testing.assert_allclose(lapsrn.load(name).upscale(lr, 2), lapsrn.load(bundled).upscale(lr, 2))
    assert main(["models"]) == 0
    assert f"| {bundled}" in capsys.readouterr().out
