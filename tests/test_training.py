"""Training: loss, data pipeline, resume == uninterrupted, atomic checkpoints, DDP == one process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lapsrn.training as T
from lapsrn import protocol as P
from lapsrn.data import PatchSampler, batches, downscale, make_pyramid, random_patch
from lapsrn.losses import charbonnier, pyramid_loss
from lapsrn.weights import load

from .conftest import smooth_image


def test_charbonnier_is_the_papers():
    d = torch.tensor([[0.0, 3e-3, -4e-3], [1e-3, 0.0, 0.0]])  # a batch of two samples
    expected = np.sum(np.sqrt(d.numpy() ** 2 + 1e-6)) / 2  # summed over pixels, mean over the batch
    np.testing.assert_allclose(charbonnier(d, torch.zeros(2, 3), reduction="sum"), expected, rtol=1e-6)
    assert float(charbonnier(torch.zeros(4), torch.zeros(4))) == pytest.approx(1e-3)


def test_pyramid_loss_sums_levels():
    preds = [torch.ones(1, 1, 2, 2), torch.ones(1, 1, 4, 4)]
    targets = [torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 4, 4)]
    assert float(pyramid_loss(preds, targets, "l2")) == pytest.approx(2.0)


def test_torch_downscale_matches_protocol_imresize(rng):
    hr = rng.random((3, 1, 32, 24))
    got = downscale(torch.from_numpy(hr), 4).numpy()
    for i in range(3):
        np.testing.assert_allclose(got[i, 0], P.imresize(hr[i, 0], 0.25), atol=1e-12)


def test_pyramid_targets_sizes():
    pyr = make_pyramid(torch.rand(2, 1, 64, 64), 3)
    assert pyr.lr.shape[-1] == 8 and [t.shape[-1] for t in pyr.targets] == [16, 32, 64]


def test_random_patch_without_downscale_is_an_exact_rotated_crop(rng):
    img = rng.random((60, 50)).astype(np.float32)
    patch = random_patch(img, 16, np.random.default_rng(3), min_ratio=1.0)
    views = [np.rot90(patch, -k) for k in range(4)] + [np.rot90(patch[:, ::-1], -k) for k in range(4)]
    windows = np.lib.stride_tricks.sliding_window_view(img, (16, 16)).reshape(-1, 16, 16)
    assert any((windows == v).all(axis=(1, 2)).any() for v in views)


def test_random_patch_downscaled_is_smooth_and_in_range(rng):
    img = smooth_image(rng, 200, 180, 1).astype(np.float32)
    for seed in range(5):
        patch = random_patch(img, 40, np.random.default_rng(seed), min_ratio=0.5)
        assert patch.shape == (40, 40) and patch.dtype == np.float32
        assert -0.05 < patch.min() and patch.max() < 1.05  # bicubic may overshoot slightly, never wildly


def test_batches_depend_only_on_seed_and_step_even_with_workers():
    imgs = [np.random.default_rng(i).random((80, 90)).astype(np.float32) for i in range(3)]
    sampler = PatchSampler(imgs, 32, [2, 4], seed=1, size=4)
    inline = list(batches(sampler, 0, 5, workers=0))
    resumed = list(batches(sampler, 3, 5, workers=0))
    parallel = list(batches(sampler, 0, 5, workers=2))
    assert [s for s, _ in inline[0]] == [2, 4] and inline[0][0][1].shape == (2, 1, 32, 32)
    for a, b in zip(inline[3:], resumed):
        assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    for a, b in zip(inline, parallel):
        assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not torch.equal(inline[0][0][1], inline[1][0][1])
    other_seed = PatchSampler(imgs, 32, [2, 4], seed=2, size=4)[0]
    assert not torch.equal(inline[0][0][1], other_seed[0][1])


@pytest.fixture
def tiny_data(tmp_path, rng):
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    for i in range(3):
        Image.fromarray(P.im2uint8(smooth_image(rng, 70, 80))).save(train / f"{i}.png")
    Image.fromarray(P.im2uint8(smooth_image(rng, 24, 24))).save(val / "v.png")
    return train, val


def tiny_config(tiny_data, out: Path, **kw) -> T.TrainConfig:
    train, val = tiny_data
    base = dict(depth=1, recursions=1, scales=[2, 4], patch=32, batch=4, steps=4, val_every=2, val_scale=2,
                train_dirs=[str(train)], val_dirs=[str(val)], out=str(out), optimizer="adam", lr=1e-3,
                schedule="cosine", warmup=1)
    base.update(kw)
    return T.make_config(None, None, **base)


def weights_of(out: Path) -> dict[str, torch.Tensor]:
    return load(out / "model.safetensors")[0].state_dict()


def test_resume_reaches_the_same_result(tiny_data, tmp_path, monkeypatch):
    T.train(tiny_config(tiny_data, tmp_path / "a"), quiet=True)

    real_save = T._save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        raise KeyboardInterrupt  # killed right after the step-2 checkpoint

    monkeypatch.setattr(T, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_config(tiny_data, tmp_path / "b"), quiet=True)
    monkeypatch.setattr(T, "_save_checkpoint", real_save)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 2
    T.train(tiny_config(tiny_data, tmp_path / "b"), resume=True, quiet=True)

    a, b = weights_of(tmp_path / "a"), weights_of(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    rows_a = list(csv.reader(open(tmp_path / "a" / "log.csv")))
    rows_b = list(csv.reader(open(tmp_path / "b" / "log.csv")))
    assert [r[1] for r in rows_a] == [r[1] for r in rows_b]  # same losses at steps 2 and 4


def test_failed_checkpoint_write_keeps_the_previous_one(tiny_data, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_data, tmp_path / "c", steps=2)
    T.train(cfg, quiet=True)
    ckpt = tmp_path / "c" / "checkpoint.pt"
    before = ckpt.read_bytes()

    def torn_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError):
        T._save_checkpoint(ckpt, {"step": 99})
    assert ckpt.read_bytes() == before
    assert torch.load(ckpt, weights_only=True)["step"] == 2


def test_two_process_ddp_matches_one_process(tiny_data, tmp_path):
    """torchrun --nproc-per-node 2 (gloo) follows the same loss trajectory as one process."""
    train, val = tiny_data
    args = ["--depth", "1", "--recursions", "1", "--scales", "2", "4", "--patch", "32", "--batch", "8", "--steps", "3",
            "--val-every", "1", "--val-scale", "2", "--train-dirs", str(train), "--val-dirs", str(val),
            "--optimizer", "adam", "--lr", "1e-3", "--warmup", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "lapsrn", "train", *args, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "lapsrn", "train", *args, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    loss_one = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "one" / "log.csv"))]
    loss_two = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "two" / "log.csv"))]
    assert len(loss_one) == 3
    np.testing.assert_allclose(loss_two, loss_one, rtol=1e-4)
    a, b = weights_of(tmp_path / "one"), weights_of(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_training_curve_png(tiny_data, tmp_path):
    from lapsrn.cli import main

    T.train(tiny_config(tiny_data, tmp_path / "p", steps=4, val_every=1), quiet=True)
    assert main(["plot", str(tmp_path / "p" / "log.csv"), "-o", str(tmp_path / "curve.png")]) == 0
    img = Image.open(tmp_path / "curve.png")
    assert img.size == (1000, 400)
    assert len(np.unique(np.asarray(img.convert("L")))) > 10  # drawn, not blank
