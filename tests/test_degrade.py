"""Degradations: parsing, Y-only JPEG faithful to a colour JPEG, training inputs a pure function of (seed, step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lapsrn import protocol as P
from lapsrn.cli import main
from lapsrn.config import ConfigError, make_config
from lapsrn.data import PatchSampler
from lapsrn.degrade import Recipe, Step, degrade_lr, degrade_patch, downscale, jpeg_rgb, jpeg_y, parse

from .conftest import shared_path, smooth_image
from .train_fixtures import one_thread_fixture, tiny_data_fixture, tiny_flags  # noqa: F401 (fixtures)


def test_parse_reads_steps_in_order_and_refuses_typos():
    assert parse("noise:5,jpeg:75") == [Step("noise", 5), Step("jpeg", 75)]
    for bad, message in [
        ("jpg:75", "expected steps like"),
        ("jpeg:", "expected steps like"),
        ("jpeg:101", "integer in 1..100"),
        ("jpeg:7.5", "integer in 1..100"),
        ("noise:-1", "0..255"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse(bad)


@pytest.mark.parametrize("quality", [30, 75, 95])
def test_y_only_jpeg_decodes_to_the_luma_of_a_colour_jpeg(quality, rng):
    """The claim training relies on: a grayscale JPEG of JFIF-range Y = the Y of a colour JPEG of that quality."""
    img = np.clip(smooth_image(rng, 96, 128) + 0.15 * rng.standard_normal((96, 128, 3)), 0, 1)
    img = P.im2uint8(img) / 255.0
    y = P.rgb2ycbcr(img)[..., 0]
    y_colour = P.rgb2ycbcr(jpeg_rgb(img, quality))[..., 0]
    y_simulated = jpeg_y(y, quality)
    damage = np.abs(y_colour - y).mean()
    assert np.abs(y_colour - y_simulated).mean() < 0.2 * damage  # a fifth of what JPEG changes, at most
    assert np.abs(y_colour - y_simulated).mean() * 255 < 0.3  # levels: the colour steps round


def test_downscale_kernels_shapes_and_means(rng):
    hr = smooth_image(rng, 32, 48, channels=1)
    for kernel in ("bicubic", "bilinear", "area"):
        lr = downscale(hr, 4, kernel)
        assert lr.shape == (8, 12)
        assert abs(lr.mean() - hr.mean()) < 0.02
    np.testing.assert_allclose(downscale(hr, 4, "bicubic"), P.imresize(hr, 0.25))
    np.testing.assert_allclose(downscale(hr, 2, "area")[0, 0], hr[:2, :2].mean())


def test_training_inputs_depend_only_on_seed_and_step(rng):
    imgs = [smooth_image(rng, 80, 90, channels=1).astype(np.float32) for _ in range(3)]
    recipe = Recipe(clean=0.2, blur=0.5, noise=10, jpeg=(30, 95))
    sampler = PatchSampler(imgs, 32, [2, 4], seed=1, size=8, recipe=recipe)
    clean = PatchSampler(imgs, 32, [2, 4], seed=1, size=8)
    a, b, c = sampler[5], sampler[5], clean[5]
    for (sa, hra, lra), (_, hrb, lrb), (_, hrc, lrc) in zip(a, b, c, strict=True):
        assert torch.equal(hra, hrb) and torch.equal(lra, lrb)  # same step, same inputs
        assert torch.equal(hra, hrc) and lrc is None  # the HR patches of the clean run
        assert lra.shape == (4, 1, 32 // sa, 32 // sa) and lra.dtype == torch.float32
    assert not torch.equal(sampler[6][0][2], a[0][2])
    protocol = [torch.from_numpy(P.imresize(p[0].numpy().astype(np.float64), 1 / sa)) for sa, hr, _ in a for p in hr]
    degraded = [lr[0] for _, _, lrs in a for lr in lrs]
    changed = [not torch.allclose(d.double(), p, atol=1e-4) for d, p in zip(degraded, protocol)]
    assert 0 < sum(changed) < len(changed) + 1 and sum(changed) >= len(changed) // 2  # most of them degraded


def test_every_degradation_step_is_reachable():
    hr = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    recipe = Recipe(clean=0.0, blur=0.5, noise=10, jpeg=(30, 95))
    outs = [degrade_patch(hr, 4, recipe, np.random.default_rng(i)) for i in range(40)]
    assert all(o.shape == (16, 16) for o in outs)
    plain = {downscale(hr, 4, k).tobytes() for k in ("bicubic", "bilinear", "area")}
    assert len({o.tobytes() for o in outs} - plain) >= 30  # blur, noise or JPEG made most of them unique
    never = Recipe(clean=1.0, blur=0.5, noise=10, jpeg=(30, 95))
    np.testing.assert_array_equal(degrade_patch(hr, 4, never, np.random.default_rng(0)), P.imresize(hr, 0.25))


def test_evaluation_degradation_is_seeded_per_image(rng):
    lr = smooth_image(rng, 20, 24)
    steps = parse("noise:5,jpeg:75")
    np.testing.assert_array_equal(degrade_lr(lr, steps, "a"), degrade_lr(lr, steps, "a"))
    assert not np.array_equal(degrade_lr(lr, steps, "a"), degrade_lr(lr, steps, "b"))
    assert np.abs(degrade_lr(lr, steps, "a") - lr).mean() > 1 / 255


def test_evaluate_degrade_scores_the_degraded_lr(capsys):
    set5 = str(shared_path("datasets", "test", "Set5"))
    assert main(["evaluate", "-d", set5, "-s", "4", "--degrade", "jpeg:50", "--no-bicubic"]) == 0
    degraded = capsys.readouterr().out
    assert "Set5 (jpeg:50)" in degraded
    assert main(["evaluate", "-d", set5, "-s", "4", "--no-bicubic"]) == 0
    clean = capsys.readouterr().out

    def psnr(table: str) -> float:
        return float(table.strip().splitlines()[-1].split("|")[3].split("/")[0].strip(" *"))

    assert psnr(degraded) < psnr(clean) - 0.5
    assert main(["evaluate", "-d", set5, "--degrade", "jpeg:75,blurr:1"]) != 0
    err = capsys.readouterr().err
    assert "expected steps like" in err and len(err.strip().splitlines()) == 1


def test_degraded_training_config_and_run(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="degrade_jpeg"):
        make_config("fast", None, degrade_clean=0.5, degrade_jpeg=[90, 30])
    assert make_config("fast", None).recipe() is None
    out = tmp_path / "run"
    flags = tiny_flags(tiny_data, steps=2, val_every=2, degrade_clean=0.3, degrade_jpeg=[40, 80])
    assert main(["train", *flags, "--out", str(out), "--quiet"]) == 0
    assert (out / "model.safetensors").is_file()
