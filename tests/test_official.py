"""The authors' released weights under the papers' protocol give the published numbers."""

import numpy as np
import pytest

from lapsrn import evaluate as E
from lapsrn.api import Upscaler
from lapsrn.colour import super_resolve
from lapsrn.io import read_image
from lapsrn.weights import load

from .conftest import shared_path


def dataset_scores(weights: str, dataset: str, scale: int) -> tuple[float, float]:
    up = Upscaler(load(shared_path("weights", "official", weights))[0])
    folder = shared_path("datasets", "test", dataset)
    scores = [
        E.evaluate_image(p.stem, read_image(p).pixels, scale, lambda lr, s: super_resolve(up, lr, s))
        for p in E.image_files(folder)
    ]
    m = E.mean_scores(scores)
    return m["psnr"], m["ssim"]


@pytest.mark.parametrize(
    "weights,scale,psnr,ssim",
    [
        ("LapSRN_x4.mat", 4, 31.54, 0.8852),
        ("MSLapSRN_D5R8.mat", 2, 37.78, 0.9601),
        ("MSLapSRN_D5R8.mat", 4, 31.74, 0.8889),
        ("MSLapSRN_D5R8.mat", 8, 26.34, 0.7525),
    ],
)
def test_official_weights_reproduce_set5(weights, scale, psnr, ssim):
    got_psnr, got_ssim = dataset_scores(weights, "Set5", scale)
    assert got_psnr == pytest.approx(psnr, abs=0.01)
    assert got_ssim == pytest.approx(ssim, abs=0.001)


def test_bicubic_baseline_set5_x4():
    from lapsrn.colour import bicubic

    folder = shared_path("datasets", "test", "Set5")
    scores = [E.evaluate_image(p.stem, read_image(p).pixels, 4, bicubic) for p in E.image_files(folder)]
    assert E.mean_scores(scores)["psnr"] == pytest.approx(28.43, abs=0.01)


def test_gray_ground_truth_is_scored_as_three_equal_channels():
    hr = read_image(shared_path("datasets", "test", "Set14", "bridge.png")).pixels
    assert hr.ndim == 2  # our copy is single-channel
    full, _ = E.prepare(hr, 4)
    assert full.shape[-1] == 3 and np.array_equal(full[..., 0], full[..., 2])
