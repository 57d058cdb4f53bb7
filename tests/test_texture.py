"""The offline texture measure: high-frequency energy relative to the ground truth."""

from __future__ import annotations

import numpy as np

from lapsrn import evaluate as E
from lapsrn.cli import main
from lapsrn.degrade import blur, gaussian_kernel

from .conftest import shared_path, smooth_image


def test_hf_ratio_is_one_for_the_truth_below_for_blur_above_for_noise(rng):
    hr = np.clip(smooth_image(rng, 64, 64) + 0.1 * rng.standard_normal((64, 64, 3)), 0, 1)
    truth = E.scored_y(hr, 4)
    assert E.hf_ratio(truth, truth) == 1.0
    assert E.hf_ratio(truth, E.scored_y(blur(hr, gaussian_kernel(1.5, 1.5, 0.0)), 4)) < 0.3
    assert E.hf_ratio(truth, E.scored_y(np.clip(hr + 0.1 * rng.standard_normal(hr.shape), 0, 1), 4)) > 1.5


def test_evaluate_texture_adds_the_ratio_and_the_model_has_more_detail_than_bicubic(capsys):
    set5 = str(shared_path("datasets", "test", "Set5"))
    assert main(["evaluate", "-d", set5, "-s", "4", "--texture"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    hf = {r.split("|")[1].strip(): float(r.split("|")[3].split("/")[2].strip(" *")) for r in rows}
    assert 0 < hf["bicubic"] < hf["lapsrn default"] < 1  # PSNR models are smoother than the truth
