"""Shared fixtures. Tests that need ../shared fail loudly when it is missing: they never skip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LAPSRN_SHARED", REPO.parent / "shared"))
OFFICIAL = SHARED / "weights" / "official"
TEST_SETS = SHARED / "datasets" / "test"

torch.set_num_threads(int(os.environ.get("LAPSRN_TEST_THREADS", "2")))


def shared_path(*parts: str) -> Path:
    """A path under ../shared that must exist (assert, not skip: a missing data dir is a failure)."""
    path = SHARED.joinpath(*parts)
    assert path.exists(), f"{path} is missing: the tests need the shared data beside the clone (or LAPSRN_SHARED)"
    return path


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    """The engine's kernels loaded (compiled first, on a cold cache) before any test: a test of a command's exact
    output would otherwise also see the compile notice, when it happens to be the first to need them."""
    from lapsrn.engine import native

    native.functions()


@pytest.fixture(scope="session")
def lapsrn_x4():
    """The authors' LapSRN x4 network."""
    from lapsrn.weights import load

    return load(shared_path("weights", "official", "LapSRN_x4.mat"))[0]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def smooth_image(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    """A natural-ish float64 test image in [0, 1]: smooth gradients plus texture."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = [0.5 + 0.4 * np.sin(6 * xx + 3 * yy + k) * np.cos(4 * yy - k) for k in range(channels)]
    img = np.stack(base, axis=-1) + 0.05 * rng.standard_normal((h, w, channels))
    img = np.clip(img, 0, 1)
    return img[..., 0] if channels == 1 else img


# Hypothesis: CI replays a fixed sequence (a red CI must mean a real regression); explore with
# HYPOTHESIS_PROFILE=explore for fresh random inputs.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
