"""A tiny training set and config shared by the training tests: runs of a few steps in well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from lapsrn import protocol as P
from lapsrn.config import TrainConfig, make_config
from lapsrn.weights import load

from .conftest import smooth_image


@pytest.fixture(name="one_thread", autouse=True)
def one_thread_fixture():
    """Training tests run on one thread: tiny convs on two threads of a busy machine spin for seconds per step."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(name="tiny_data")
def tiny_data_fixture(tmp_path, rng) -> tuple[Path, Path]:
    """(train folder of three 70x80 images, validation folder of one 24x24 image)."""
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    for i in range(3):
        Image.fromarray(P.im2uint8(smooth_image(rng, 70, 80))).save(train / f"{i}.png")
    Image.fromarray(P.im2uint8(smooth_image(rng, 24, 24))).save(val / "v.png")
    return train, val


TINY = {
    "depth": 1,
    "recursions": 1,
    "scales": [2, 4],
    "patch": 32,
    "batch": 4,
    "steps": 4,
    "val_every": 2,
    "val_scale": 2,
    "optimizer": "adam",
    "lr": 1e-3,
    "schedule": "cosine",
    "warmup": 1,
    "device": "cpu",
}


def tiny_config(tiny_data: tuple[Path, Path], out: Path, **kw) -> TrainConfig:
    """TINY on the tiny data, writing to ``out``, with any field overridden."""
    train, val = tiny_data
    return make_config(
        None, None, **{**TINY, "train_dirs": [str(train)], "val_dirs": [str(val)], "out": str(out), **kw}
    )


def tiny_flags(tiny_data: tuple[Path, Path], **kw) -> list[str]:
    """The same as ``lapsrn train`` flags; a field given as None is left out."""
    train, val = tiny_data
    values = {**TINY, "train_dirs": [str(train)], "val_dirs": [str(val)], **kw}
    flags = []
    for name, value in values.items():
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", *map(str, value if isinstance(value, list) else [value])]
    return flags


def weights_of(out: Path) -> dict[str, torch.Tensor]:
    """The run's model.safetensors as a state dict."""
    return load(out / "model.safetensors")[0].state_dict()


def assert_same_weights(a: Path, b: Path) -> None:
    """Bit-identical model files: every tensor equal, not merely close."""
    wa, wb = weights_of(a), weights_of(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs: max |a - b| = {float((wa[k] - wb[k]).abs().max())}"


def log_without_seconds(out: Path) -> list[list[str]]:
    """log.csv's rows minus the wall-clock column, which no two runs share."""
    rows = [line.split(",") for line in (out / "log.csv").read_text().splitlines()]
    return [r[:3] + r[4:] for r in rows]
