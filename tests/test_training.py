"""Training: loss, data pipeline, resume == uninterrupted, atomic checkpoints, DDP == one process."""

from __future__ import annotations

import csv
import errno
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import lapsrn.training as T
from lapsrn import protocol as P
from lapsrn.data import PatchSampler, batches, downscale, make_pyramid, random_patch
from lapsrn.losses import charbonnier, pyramid_loss

from .conftest import smooth_image
from .train_fixtures import (  # noqa: F401 (fixtures)
    assert_same_weights,
    log_without_seconds,
    one_thread_fixture,
    tiny_config,
    tiny_data_fixture,
    tiny_flags,
    weights_of,
)


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
    assert [s for s, _, _ in inline[0]] == [2, 4] and inline[0][0][1].shape == (2, 1, 32, 32)
    for a, b in zip(inline[3:], resumed):
        assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    for a, b in zip(inline, parallel):
        assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not torch.equal(inline[0][0][1], inline[1][0][1])
    other_seed = PatchSampler(imgs, 32, [2, 4], seed=2, size=4)[0]
    assert not torch.equal(inline[0][0][1], other_seed[0][1])


def test_validation_leaves_the_training_network_and_threads_as_they_were(tiny_data, tmp_path, rng):
    """The two known ways validation perturbed training: channels-last weights, and torch's thread count."""
    cfg = tiny_config(tiny_data, tmp_path / "v")
    net = T.build_model(cfg)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    T.validate(net, cfg, {"v": [smooth_image(rng, 24, 24)]}, "cpu")
    assert torch.get_num_threads() == 1  # the one_thread fixture's
    for k, v in net.state_dict().items():
        assert v.is_contiguous() and torch.equal(v, before[k]), k


def _signal_at(monkeypatch, signals: dict[int, int]) -> None:
    """Send this process each signal as the training loop starts the given step (lr_at runs once per step)."""
    real_lr_at = T.lr_at

    def lr_at(cfg, step):
        if step in signals:
            os.kill(os.getpid(), signals.pop(step))
        return real_lr_at(cfg, step)

    monkeypatch.setattr(T, "lr_at", lr_at)


def test_resume_after_sigterm_and_sigint_is_bit_identical(tiny_data, tmp_path, monkeypatch):
    """Stopped twice between checkpoints, resumed twice: the very same weights and log as one run."""
    handler = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when started in the background
    T.train(tiny_config(tiny_data, tmp_path / "a", steps=12, val_every=4), quiet=True)
    cfg = tiny_config(tiny_data, tmp_path / "b", steps=12, val_every=4)
    _signal_at(monkeypatch, {3: signal.SIGTERM})
    with pytest.raises(T.TrainingInterrupted, match="SIGTERM at step 4.*--resume") as stopped:
        T.train(cfg, quiet=True)
    assert stopped.value.signum == signal.SIGTERM
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 4
    _signal_at(monkeypatch, {9: signal.SIGINT})  # after the step-8 checkpoint, mid-interval
    with pytest.raises(T.TrainingInterrupted, match="SIGINT at step 10"):
        T.train(cfg, resume=True, quiet=True)
    assert len(log_without_seconds(tmp_path / "b")) == 1 + 2  # header, steps 4 and 8: the rows of the checkpoint
    T.train(cfg, resume=True, quiet=True)
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert log_without_seconds(tmp_path / "a") == log_without_seconds(tmp_path / "b")
    assert signal.getsignal(signal.SIGINT) is handler  # handlers restored


def test_stop_at_is_a_chunk_of_the_same_schedule(tiny_data, tmp_path, capsys):
    """`--stop-at 5` of a 12-step run, then --resume: the same weights and log as the run in one go."""
    from lapsrn.cli import main

    flags = [*tiny_flags(tiny_data, steps=12, val_every=4), "--quiet", "--out"]
    assert main(["train", *flags, str(tmp_path / "a")]) == 0
    flags.append(str(tmp_path / "b"))
    assert main(["train", *flags, "--stop-at", "5"]) == 0
    assert "stopped at step 5 of 12" in capsys.readouterr().out
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 5
    assert main(["train", *flags, "--resume"]) == 0
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert log_without_seconds(tmp_path / "a") == log_without_seconds(tmp_path / "b")
    assert main(["train", *flags, "--resume", "--stop-at", "13"]) == 1
    assert "--stop-at must be a step in 1..12" in capsys.readouterr().err
    before = (tmp_path / "b" / "checkpoint.pt").stat().st_mtime_ns
    assert main(["train", *flags, "--resume", "--stop-at", "5"]) == 0  # a run already past it: nothing to do
    assert "already at step 12, past --stop-at 5: nothing trained" in capsys.readouterr().out
    assert (tmp_path / "b" / "checkpoint.pt").stat().st_mtime_ns == before
    assert log_without_seconds(tmp_path / "a") == log_without_seconds(tmp_path / "b")


def test_disk_full_during_a_checkpoint_is_one_line_and_keeps_the_previous(tiny_data, tmp_path, monkeypatch, capsys):
    """ENOSPC while writing the step-2 checkpoint (simulated: fsync fails as on a full disk): one line naming
    checkpoint.pt, exit 1, step 0's checkpoint whole, no temp file left."""
    from lapsrn.cli import main

    real_fsync, calls = os.fsync, []

    def fsync_until_full(fd):  # the run's writes: config.json, checkpoint, model, log at step 0; then the checkpoint
        calls.append(fd)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_until_full)
    out = tmp_path / "c"
    assert main(["train", *tiny_flags(tiny_data), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"lapsrn: error: cannot write {out / 'checkpoint.pt'}: No space left on device "
        "(its previous version is kept)\n"
    )
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "log.csv", "model.safetensors"]


def test_two_process_ddp_matches_one_process(tiny_data, tmp_path):
    """torchrun --nproc-per-node 2 (gloo) follows the same loss trajectory as one process."""
    args = [*tiny_flags(tiny_data, batch=8, steps=3, val_every=1), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "lapsrn", "train", *args, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    for attempt in ("two", "two-again"):
        two = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
            + ["-m", "lapsrn", "train", *args, "--out", str(tmp_path / attempt)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        # once in a full CI run (never in 17 runs of this test alone) a gloo worker died of SIGABRT (exitcode -6);
        # such a crash is run once more, with both runs' messages kept should it happen again
        if not (two.returncode and "exitcode: -6" in two.stderr):
            break
        first = two.stderr
    assert two.returncode == 0, (first if attempt != "two" else "")[:2000] + two.stderr[:2000] + two.stderr[-2000:]
    loss_one = [float(r["loss"]) for r in csv.DictReader((tmp_path / "one" / "log.csv").open())]
    loss_two = [float(r["loss"]) for r in csv.DictReader((tmp_path / attempt / "log.csv").open())]
    assert len(loss_one) == 3
    np.testing.assert_allclose(loss_two, loss_one, rtol=1e-4)
    a, b = weights_of(tmp_path / "one"), weights_of(tmp_path / attempt)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_training_curve_png(tiny_data, tmp_path):
    from lapsrn.cli import main

    T.train(tiny_config(tiny_data, tmp_path / "p", steps=4, val_every=1), quiet=True)
    assert main(["plot", str(tmp_path / "p" / "log.csv"), "-o", str(tmp_path / "curve.png")]) == 0
    img = Image.open(tmp_path / "curve.png")
    assert img.size == (1000, 400)
    assert len(np.unique(np.asarray(img.convert("L")))) > 10  # drawn, not blank


def test_adversarial_resume_is_bit_identical_and_logs_the_discriminator(tiny_data, tmp_path, monkeypatch):
    """The GAN variant: both networks and optimisers in the checkpoint, so a stop and resume changes nothing."""
    adv = {"steps": 6, "val_every": 3, "adversarial": 1e-2}
    T.train(tiny_config(tiny_data, tmp_path / "a", **adv), quiet=True)
    cfg = tiny_config(tiny_data, tmp_path / "b", **adv)
    _signal_at(monkeypatch, {4: signal.SIGTERM})  # mid-interval: the window holds discriminator values too
    with pytest.raises(T.TrainingInterrupted):
        T.train(cfg, quiet=True)
    T.train(cfg, resume=True, quiet=True)
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert log_without_seconds(tmp_path / "a") == log_without_seconds(tmp_path / "b")
    a, b = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=True) for r in "ab")
    for k in a["discriminator"]:
        assert torch.equal(a["discriminator"][k], b["discriminator"][k]), k
    header, *rows = (tmp_path / "a" / "log.csv").read_text().splitlines()
    assert header == "step,loss,lr,seconds,d_loss,d_acc,val"
    assert all(0 <= float(r.split(",")[5]) <= 1 and float(r.split(",")[4]) > 0 for r in rows)
    from lapsrn.plot import plot_logs

    plot_logs([tmp_path / "a" / "log.csv"], tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_adversarial_term_moves_the_generator_differently(tiny_data, tmp_path):
    """The adversarial weight is used: the same run with it ends at other weights than without it."""
    T.train(tiny_config(tiny_data, tmp_path / "plain", steps=2, val_every=2), quiet=True)
    T.train(tiny_config(tiny_data, tmp_path / "gan", steps=2, val_every=2, adversarial=0.5), quiet=True)
    plain, gan = weights_of(tmp_path / "plain"), weights_of(tmp_path / "gan")
    assert any(not torch.equal(plain[k], gan[k]) for k in plain)


def test_discriminator_judges_detail_and_learns_sharp_from_smooth():
    """It ignores the smooth part (a brightness offset changes no logit) and, on detail, tells sharp patches from
    their blurred copies within a few steps: on raw intensities it learned nothing against real SR outputs."""
    import torch.nn.functional as F

    from lapsrn.models import Discriminator

    torch.manual_seed(0)
    disc = Discriminator()
    sharp = torch.rand(16, 1, 32, 32) * 0.2 + 0.4
    smooth = F.avg_pool2d(sharp, 3, stride=1, padding=1, count_include_pad=False)
    torch.testing.assert_close(disc(sharp + 0.1), disc(sharp), atol=1e-5, rtol=1e-5)
    opt = torch.optim.Adam(disc.parameters(), lr=4e-4, betas=(0.5, 0.999))
    for _ in range(30):
        real, fake = disc(sharp), disc(smooth)
        loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
        loss = loss + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert (disc(sharp) > 0).all() and (disc(smooth) < 0).all()
