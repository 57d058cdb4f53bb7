"""The Python API: same kind, layout and dtype out as in."""

import numpy as np
import pytest
import torch
from PIL import Image

from lapsrn.api import Upscaler
from lapsrn.models import MSLapSRN

from .conftest import smooth_image


@pytest.fixture(scope="module")
def up():
    torch.manual_seed(0)
    return Upscaler(MSLapSRN(depth=1, recursions=1).eval())


@pytest.mark.parametrize(
    "make,shape,dtype",
    [
        (lambda img: (img * 255).astype(np.uint8), (20, 24, 3), np.uint8),
        (lambda img: (img[..., 0] * 65535).astype(np.uint16), (20, 24), np.uint16),
        (lambda img: np.dstack([img, img[..., :1]]).astype(np.float32), (20, 24, 4), np.float32),
    ],
)
def test_numpy_in_numpy_out(up, rng, make, shape, dtype):
    arr = make(smooth_image(rng, 10, 12))
    out = up.upscale(arr, 2)
    assert out.shape == shape and out.dtype == dtype


def test_pil_in_pil_out(up, rng):
    im = Image.fromarray((smooth_image(rng, 10, 12, 1) * 255).astype(np.uint8))
    out = up.upscale(im, 4)
    assert isinstance(out, Image.Image) and out.mode == "L" and out.size == (48, 40)


def test_tensor_in_tensor_out(up, rng):
    t = torch.from_numpy(np.moveaxis(smooth_image(rng, 10, 12), -1, 0)).float()
    out = up.upscale(t, 2)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 20, 24) and out.dtype == torch.float32


def test_api_and_file_path_agree(up, rng, tmp_path):
    from lapsrn.pictures import upscale_file

    arr = (smooth_image(rng, 10, 12) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    upscale_file(up, tmp_path / "a.png", tmp_path / "b.png", 2)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), up.upscale(arr, 2))


def test_bad_array_shape(up):
    with pytest.raises(ValueError, match="expected"):
        up.upscale(np.zeros((4, 4, 2)), 2)


def test_torch_hub_local():
    from .conftest import REPO

    hub_up = torch.hub.load(str(REPO), "lapsrn", source="local", trust_repo=True)
    assert type(hub_up).__name__ == "Upscaler"
    assert hub_up.upscale(np.zeros((6, 5), np.uint8), 2).shape == (12, 10)


def test_import_is_light():
    import subprocess
    import sys

    heavy = "('torch', 'numpy', 'scipy', 'matplotlib', 'lapsrn.training')"
    code = f"import sys, lapsrn; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pyramid_returns_every_level_of_one_pass(up, rng):
    arr = (smooth_image(rng, 10, 12) * 255).astype(np.uint8)
    levels = up.pyramid(arr)
    assert [a.shape for a in levels] == [(20, 24, 3), (40, 48, 3), (80, 96, 3)]
    np.testing.assert_array_equal(levels[1], up.upscale(arr, 4))
    t = torch.rand(1, 9, 7)
    assert [x.shape for x in up.pyramid(t, 2)] == [(1, 18, 14), (1, 36, 28)]


def test_float_rgba_values_match_the_rgb_path_and_alpha_is_resized(up, rng):
    from lapsrn import protocol as P

    img = smooth_image(rng, 10, 12)
    alpha = np.linspace(0, 1, 12)[None].repeat(10, 0)
    out = up.upscale(np.dstack([img, alpha]).astype(np.float32), 2)
    np.testing.assert_array_equal(out[..., :3], up.upscale(img.astype(np.float32), 2))
    np.testing.assert_allclose(
        out[..., 3], np.clip(P.imresize(alpha.astype(np.float32).astype(np.float64), 2), 0, 1), atol=1e-6
    )


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_tensor_values_equal_the_numpy_path(up, rng, dtype):
    img = smooth_image(rng, 10, 12)
    arr = (
        (img * 255).astype(np.uint8) if dtype == torch.uint8 else img.astype(torch.empty(0, dtype=dtype).numpy().dtype)
    )
    t = torch.from_numpy(np.moveaxis(arr, -1, 0).copy())
    out = up.upscale(t, 2)
    assert out.dtype == dtype and out.shape == (3, 20, 24)
    np.testing.assert_array_equal(np.moveaxis(out.numpy(), 0, -1), up.upscale(arr, 2))
    if dtype == torch.uint8:
        assert out.max() > 200  # 0..255 values, not 0s and 1s


def test_gray_uint8_tensor_1xhxw(up, rng):
    arr = (smooth_image(rng, 10, 12, 1) * 255).astype(np.uint8)
    out = up.upscale(torch.from_numpy(arr[None].copy()), 2)
    assert out.shape == (1, 20, 24) and out.dtype == torch.uint8
    np.testing.assert_array_equal(out[0].numpy(), up.upscale(arr, 2))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused_for_arrays_and_tensors(up, bad):
    arr = np.full((6, 6, 3), 0.5, np.float32)
    arr[2, 3, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        up.upscale(arr, 2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        up.upscale(torch.from_numpy(np.moveaxis(arr, -1, 0).copy()), 2)


def test_conversion_does_not_import_torch(monkeypatch):
    """_from_kind only looks torch up in sys.modules, so the API can work where torch is not installed."""
    import sys

    from lapsrn.api import _from_kind

    monkeypatch.delitem(sys.modules, "torch")
    pic, back = _from_kind(np.zeros((4, 4), np.uint8))
    assert pic.bits == 8 and back(pic).dtype == np.uint8
    assert "torch" not in sys.modules


def test_threads_hold_for_the_upscalers_calls_only(rng, monkeypatch):
    """Upscaler(threads=1) runs its bands on one thread and NumPy's BLAS (which does the products) on one, and
    leaves the engine's and BLAS's process-wide settings as they were: another Upscaler, and the program, keep
    theirs. A BLAS loaded later by another library (SciPy's own, with NumPy 1.x) is not NumPy's and is left alone."""
    from threadpoolctl import threadpool_info as all_pools

    from lapsrn import colour, engine

    def threadpool_info():
        return [p for p in all_pools() if "numpy" in p["filepath"]]

    assert threadpool_info(), "NumPy's BLAS was not found"

    torch.manual_seed(0)
    one = Upscaler(MSLapSRN(depth=1, recursions=1).eval(), threads=1)
    blas_before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    engine_before = engine.threads()
    seen = []
    real = colour._compose_rows

    def compose(*args):
        seen.append((engine.threads(), [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]))
        return real(*args)

    monkeypatch.setattr(colour, "_compose_rows", compose)
    img = (smooth_image(rng, 20, 24) * 255).astype(np.uint8)
    out = one.upscale(img, 2)
    assert seen and all(threads == 1 and set(blas) == {1} for threads, blas in seen), seen
    assert engine.threads() == engine_before
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == blas_before
    seen.clear()
    many = Upscaler(one.net, one.spec)
    np.testing.assert_array_equal(many.upscale(img, 2), out)  # the same samples on every thread count
    assert seen[0][0] == engine_before


def test_reading_leaves_pillows_limit_to_the_program(tmp_path):
    """The library never lifts Pillow's decompression-bomb limit for a program that imports it; an image over the
    program's limit is one line naming it. The command lifts it for its own process (io.configure_process)."""
    import PIL.Image

    from lapsrn.io import ImageError, read_image

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    before = PIL.Image.MAX_IMAGE_PIXELS
    try:
        PIL.Image.MAX_IMAGE_PIXELS = 900  # 2000 pixels is over twice the limit: a bomb to Pillow
        with pytest.raises(ImageError, match=r"a\.png: over this process's PIL.Image.MAX_IMAGE_PIXELS"):
            read_image(tmp_path / "a.png")
        assert PIL.Image.MAX_IMAGE_PIXELS == 900
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = before
    assert read_image(tmp_path / "a.png").pixels.shape == (40, 50, 3)


def test_upscale_folder_writes_what_the_command_writes(up, rng, tmp_path, capsys):
    """Upscaler.upscale_folder is the command's folder runner: the same files, byte for byte, a bad image listed
    in the result and the others written, options checked with one line."""
    from lapsrn.batch import BatchError
    from lapsrn.cli import main
    from lapsrn.weights import save

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        Image.fromarray((smooth_image(rng, 12, 10) * 255).astype(np.uint8)).save(src / name)
    (src / "broken.png").write_bytes(b"not a png")
    save(MSLapSRN(depth=1, recursions=1).eval(), tmp_path / "m.safetensors")
    import lapsrn

    model = lapsrn.load(str(tmp_path / "m.safetensors"), device="cpu")
    lines, steps = [], []
    result = model.upscale_folder(
        src,
        tmp_path / "api",
        2,
        recursive=True,
        suffix="_x2",
        log=lambda *a: lines.append(a),
        progress=lambda *s: steps.append(s),
    )
    assert result.images == 2 and result.total == 3 and [p for p, _ in result.failed] == [src / "broken.png"]
    assert sorted(p.relative_to(tmp_path / "api").as_posix() for p in result.written) == ["a_x2.png", "sub/b_x2.png"]
    assert steps[-1] == (3, 3) and any(problem and "broken.png" in line for line, problem in lines)
    argv = ["upscale", "-i", str(src), "-o", str(tmp_path / "cli"), "-s", "2", "--recursive", "--suffix", "_x2"]
    assert main([*argv, "-m", str(tmp_path / "m.safetensors")]) == 1  # the broken image
    capsys.readouterr()
    for path in result.written:
        assert path.read_bytes() == (tmp_path / "cli" / path.relative_to(tmp_path / "api")).read_bytes()
    with pytest.raises(BatchError, match="ext must be one of"):
        model.upscale_folder(src, tmp_path / "x", 2, ext="gif")
    with pytest.raises(BatchError, match="not a folder"):
        model.upscale_folder(src / "a.png", tmp_path / "x", 2)
