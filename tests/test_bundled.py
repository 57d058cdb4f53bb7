"""The bundled default model: present, hash-checked, documented, and better than bicubic."""

import json
import shutil

import numpy as np
import pytest

import lapsrn
import lapsrn.weights as W
from lapsrn import evaluate as E
from lapsrn.colour import bicubic, super_resolve
from lapsrn.io import read_image

from .conftest import shared_path


def test_default_model_loads_and_matches_its_card():
    card = W.bundled_card(W.DEFAULT_MODEL)
    path = W.PACKAGE_WEIGHTS / card["file"]
    assert W.sha256(path) == card["sha256"]
    assert path.stat().st_size < 5e6  # a few MB at most
    net, spec = W.load(None)
    assert spec.arch == "MSLapSRN" and card["scales"] == [2, 4, 8]
    assert "official" not in spec.extra.get("source", "")  # trained by us, not converted


def test_corrupt_bundled_weights_are_refused(tmp_path, monkeypatch):
    for f in W.PACKAGE_WEIGHTS.iterdir():
        shutil.copy(f, tmp_path / f.name)
    card = json.loads((tmp_path / f"{W.DEFAULT_MODEL}.json").read_text())
    data = bytearray((tmp_path / card["file"]).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / card["file"]).write_bytes(bytes(data))
    monkeypatch.setattr(W, "PACKAGE_WEIGHTS", tmp_path)
    with pytest.raises(W.WeightsError, match="sha256"):
        W.load(None)
    with pytest.raises(W.WeightsError, match="no bundled model"):
        W.load("no_such_model")


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_default_beats_bicubic_on_set5(scale):
    up = lapsrn.load()
    files = E.image_files(shared_path("datasets", "test", "Set5"))
    hrs = [(p.stem, read_image(p).pixels) for p in files]
    ours = E.mean_scores([E.evaluate_image(n, hr, scale, lambda lr, s: super_resolve(up, lr, s)) for n, hr in hrs])
    base = E.mean_scores([E.evaluate_image(n, hr, scale, bicubic) for n, hr in hrs])
    assert ours["psnr"] > base["psnr"] and ours["ssim"] > base["ssim"]
    card = W.bundled_card(W.DEFAULT_MODEL)
    if "metrics" in card:  # the card's figure is what this model really scores
        assert ours["psnr"] == pytest.approx(card["metrics"][f"Set5 x{scale} lapsrn default"][0], abs=0.01)


def test_sample_image_upscales_with_the_default(tmp_path):
    from lapsrn.cli import main

    sample = W.PACKAGE_WEIGHTS.parent / "assets" / "sample.png"
    assert main(["upscale", "-i", str(sample), "-o", str(tmp_path / "s.png"), "-s", "4"]) == 0
    assert read_image(tmp_path / "s.png").pixels.shape == (480, 640, 3)
    assert np.ptp(read_image(tmp_path / "s.png").pixels) > 0.5
