"""The rough edges a new user hit (issue 27): each fixed as a user expects, each with a test."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lapsrn.cli import main

from .conftest import shared_path


def run(capsys, *args: str) -> tuple[int, str]:
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.fromarray((rng.random((12, 10, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_one_file_into_a_folder(photo, tmp_path, capsys):
    """-o an existing folder, or a new one written with a trailing slash: the output goes in it, named as in a
    folder run (--suffix and --ext apply)."""
    (tmp_path / "big").mkdir()
    assert run(capsys, "upscale", "-i", str(photo), "-o", str(tmp_path / "big"), "-s", "2", "--quiet")[0] == 0
    assert Image.open(tmp_path / "big" / "photo.png").size == (20, 24)
    new = f"{tmp_path / 'new'}/"
    code, err = run(capsys, "upscale", "-i", str(photo), "-o", new, "-s", "2", "--suffix", "_x2", "--ext", "jpg")
    assert code == 0, err
    assert Image.open(tmp_path / "new" / "photo_x2.jpg").size == (20, 24)


def test_folder_and_file_options_that_do_not_fit(photo, tmp_path, capsys):
    folder = str(photo.parent)
    code, err = run(capsys, "upscale", "-i", folder, "-o", str(tmp_path / "x.png"), "-s", "2")
    assert (
        code == 1
        and err
        == f"lapsrn: error: {tmp_path / 'x.png'}: for a folder of images -o names a folder, "
        "and this looks like a file name\n"
    )
    assert not (tmp_path / "x.png").exists()
    for flag in (["--shard", "0/2"], ["--recursive"]):
        code, err = run(capsys, "upscale", "-i", str(photo), "-o", str(tmp_path / "o.png"), *flag)
        assert code == 1 and err == f"lapsrn: error: {flag[0]} is for a folder; {photo} is one file\n"


def test_a_format_that_drops_alpha_or_depth_says_so(tmp_path, capsys):
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((8, 8, 4)) * 255).astype(np.uint8), "RGBA").save(tmp_path / "a.png")
    Image.fromarray((rng.random((8, 8)) * 65535).astype(np.uint16)).save(tmp_path / "d.png")
    code, err = run(capsys, "upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.jpg"), "-s", "2")
    assert (
        code == 0
        and (
            f"lapsrn: warning: {tmp_path / 'a.jpg'}: written without its transparency (JPEG has no alpha); "
            "write .png or .tif to keep it"
        )
        in err.splitlines()
    )
    code, err = run(capsys, "upscale", "-i", str(tmp_path / "d.png"), "-o", str(tmp_path / "d.webp"), "-s", "2")
    assert code == 0 and "written without its 16-bit samples (WEBP holds 8 bits)" in err
    code, err = run(capsys, "upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "a2.png"), "-s", "2")
    assert "warning" not in err


def test_jpeg_inputs_get_a_model_tip_once(tmp_path, capsys):
    folder = tmp_path / "jpegs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 90 + i, np.uint8)).save(folder / f"{i}.jpg")
    tip = "lapsrn: note: the default model sharpens JPEG compression blocks too"
    code, err = run(capsys, "upscale", "-i", str(folder), "-o", str(tmp_path / "o"), "-s", "2")
    assert code == 0 and err.count(tip) == 1
    code, err = run(capsys, "upscale", "-i", str(folder), "-o", str(tmp_path / "r"), "-s", "2", "-m", "real")
    assert code == 0 and tip not in err


def test_evaluate_given_a_file_and_json_into_a_new_folder(tmp_path, capsys):
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray((np.random.default_rng(2).random((24, 24, 3)) * 255).astype(np.uint8)).save(hr / "a.png")
    code, err = run(capsys, "evaluate", "-d", str(hr / "a.png"), "-s", "2")
    assert code == 1 and err == f"lapsrn: error: {hr / 'a.png'}: is a file; -d takes a folder of HR images\n"
    out = tmp_path / "results" / "deep" / "r.json"
    assert main(["evaluate", "-d", str(hr), "-s", "2", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert out.is_file() and "lapsrn: table cells: PSNR (dB) / SSIM" in captured.err
    assert captured.out.strip().splitlines()[0].startswith("| method | scale |")  # stdout: the table alone


def test_a_lapsrn_asked_beyond_its_levels_says_what_to_use(photo, tmp_path, capsys):
    model = str(shared_path("weights", "official", "LapSRN_x4.mat"))
    code, err = run(capsys, "upscale", "-i", str(photo), "-o", str(tmp_path / "o.png"), "-s", "8", "-m", model)
    assert code == 1 and err == (
        "lapsrn: error: this LapSRN goes up to x4; for x8 use one trained for it (the authors' LapSRN_x8.mat) "
        "or an MS-LapSRN model, such as the bundled default\n"
    )


def test_convert_takes_only_mat_and_keeps_existing_outputs(photo, tmp_path, capsys):
    code, err = run(capsys, "convert", str(photo), "-o", str(tmp_path / "m.safetensors"))
    assert code == 1 and err == f"lapsrn: error: {photo}: convert takes the authors' MatConvNet weights, a .mat file\n"
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"mine")
    mat = str(shared_path("weights", "official", "LapSRN_x2.mat"))
    code, err = run(capsys, "convert", mat, "-o", str(out))
    assert code == 1 and err == f"lapsrn: error: {out}: exists; refusing to replace it (use --overwrite)\n"
    assert out.read_bytes() == b"mine"
    assert run(capsys, "convert", mat, "-o", str(out), "--overwrite")[0] == 0
    assert out.stat().st_size > 1000


def test_api_paths_and_batches_of_one():
    import torch

    import lapsrn

    up = lapsrn.load()
    with pytest.raises(ValueError, match=r"^upscale takes an image, not a path: open it first"):
        up.upscale("photo.jpg", 2)
    batch = torch.rand(1, 3, 6, 5)
    out = up.upscale(batch, 2)
    assert out.shape == (1, 3, 12, 10) and out.dtype == batch.dtype
    assert torch.equal(out[0], up.upscale(batch[0], 2))
    with pytest.raises(ValueError, match="one image at a time: got a batch of 2"):
        up.upscale(torch.rand(2, 3, 6, 5), 2)


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (1, 5), (3, 7)])
def test_tiny_images_keep_their_colour(shape):
    """A flat colour of a few pixels comes back as that colour, to a level (zero padding tinted 1x1 by ~10)."""
    import lapsrn

    up = lapsrn.load()
    flat = np.empty((*shape, 3), np.uint8)
    flat[:] = (200, 60, 30)
    for scale in (2, 3, 4):
        out = up.upscale(flat, scale)
        assert out.shape[:2] == (shape[0] * scale, shape[1] * scale)
        assert np.abs(out.astype(int) - flat[0, 0]).max() <= 1
    for level in up.pyramid(flat[..., 0]):  # to x8: three levels of the network's own small ripple
        assert abs(level.mean() - 200) < 1 and np.abs(level.astype(int) - 200).max() <= 3


def test_quality_for_lossless_outputs_is_said(photo, tmp_path, capsys):
    code, err = run(capsys, "upscale", "-i", str(photo), "-o", str(tmp_path / "o.png"), "-s", "2", "--quality", "80")
    assert code == 0 and "lapsrn: warning: --quality applies to JPEG and WebP outputs; these are lossless" in err
    code, err = run(capsys, "upscale", "-i", str(photo), "-o", str(tmp_path / "o.jpg"), "-s", "2", "--quality", "80")
    assert code == 0 and "--quality applies" not in err


def test_export_names_everything_missing_at_once(tmp_path):
    import subprocess
    import sys

    from lapsrn.cli import install_hint

    code = (
        "import sys; sys.modules['torch'] = sys.modules['onnx'] = None\n"
        "from lapsrn.cli import main; sys.exit(main(['export', '--onnx', 'x.onnx']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == f"lapsrn: error: lapsrn export needs torch, onnx: {install_hint('export')}\n"


def test_the_memory_budget_is_checked_before_decoding(tmp_path, capsys, monkeypatch):
    """An image the budget cannot run is refused from its header: the pixels are never decoded."""
    from lapsrn import pictures as upscale

    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "big.png")

    def never(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(upscale, "read_image", never)
    code, err = run(
        capsys, "upscale", "-i", str(tmp_path / "big.png"), "-o", str(tmp_path / "o.png"), "--max-memory", "20M"
    )
    assert code == 1 and err.startswith("lapsrn: error: --max-memory 20M is too small for x4 of a 400x300 image")
    monkeypatch.undo()
    code, err = run(
        capsys, "upscale", "-i", str(tmp_path / "big.png"), "-o", str(tmp_path / "o.png"), "--max-memory", "200M"
    )
    assert code == 0, err  # a budget that fits still runs (in tiles)
