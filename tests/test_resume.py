"""--resume: refuses settings that change the result, extends --steps, survives kills at random moments exactly."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lapsrn.training as T
from lapsrn.cli import main
from lapsrn.weights import load

from . import train_fixtures as F
from .train_fixtures import one_thread_fixture, tiny_data_fixture  # noqa: F401 (fixtures)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--lr", "0.1"], "lr 0.1 (checkpoint 0.001)"),
        (["--recursions", "2"], "recursions 2 (checkpoint 1)"),
        (["--skip", "NS"], "skip NS (checkpoint SS)"),
        (["--scales", "2"], "scales 2 (checkpoint 2 4)"),
        (["--optimizer", "sgd"], "optimizer sgd (checkpoint adam)"),
        (["--optimizer", "sgd", "--lr", "0.1"], "optimizer sgd (checkpoint adam), lr 0.1 (checkpoint 0.001)"),
    ],
)
def test_resume_refuses_settings_that_change_the_result(flags, named, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    common = [*F.tiny_flags(tiny_data, steps=2), "--out", str(out), "--quiet"]
    assert main(["train", *common]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["train", *common, *flags, "--steps", "4", "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--resume with settings that change the result: {named}; give the run's own settings" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched


def test_resume_to_more_steps_continues_the_run(tiny_data, tmp_path, capsys):
    """Changing only --steps (and --val-every, --workers) is allowed: the run goes on from its checkpoint."""
    out = tmp_path / "run"
    flags = [*F.tiny_flags(tiny_data, steps=2, schedule="step"), "--out", str(out), "--quiet"]
    assert main(["train", *flags]) == 0
    assert main(["train", *flags, "--steps", "6", "--val-every", "3", "--workers", "1", "--resume"]) == 0
    assert [r[0] for r in F.log_without_seconds(out)] == ["step", "2", "3", "6"]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6
    reference = tmp_path / "ref"  # with the step schedule, the same as 6 steps in one go
    assert main(["train", *flags, "--steps", "6", "--out", str(reference)]) == 0
    F.assert_same_weights(out, reference)


def test_resume_rewrites_missing_or_stale_model_and_log_from_the_checkpoint(tiny_data, tmp_path):
    """A kill between checkpoint.pt and the files made from it: the next start brings them level."""
    out = tmp_path / "run"
    T.train(F.tiny_config(tiny_data, out, steps=4), quiet=True)
    good = tmp_path / "good"
    shutil.copytree(out, good)
    (out / "model.safetensors").unlink()
    (out / "log.csv").write_text("step,loss,lr,seconds,val\n2,0.1,1e-3,1.0,20.0\n4,0.1,1e-3,1.0,20.0\n6,junk\n")
    T.train(F.tiny_config(tiny_data, out, steps=4), resume=True, quiet=True)
    F.assert_same_weights(good, out)
    assert load(out / "model.safetensors")[1].extra["trained_by"] == "lapsrn train, 4 steps"
    assert (out / "log.csv").read_bytes() == (good / "log.csv").read_bytes()


def test_stale_temp_files_are_removed_and_others_kept(tiny_data, tmp_path):
    """lapsrn's temp files (io.atomic_path names them with the writer's pid) of a dead writer go; others stay."""
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs, as after a SIGKILL
    ours = [
        f".checkpoint.pt.lapsrn-{dead.pid}-k2j4_x9.tmp",
        f".model.safetensors.lapsrn-{dead.pid}-abc123.tmp",
        f".log.csv.lapsrn-{dead.pid}-q.tmp",
    ]
    live = f".config.json.lapsrn-{os.getppid()}-x.tmp"  # a writer that is still running: its file is kept
    theirs = [".notes.txt.abc.tmp", "model.safetensors.tmp", "data.tmp", live]
    for name in ours + theirs:
        (out / name).write_bytes(b"left by a kill")
    T.train(F.tiny_config(tiny_data, out, steps=2), resume=True, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "log.csv", "checkpoint.pt", "model.safetensors", *theirs]
    )


def _run_until_killed(cmd: list[str], env: dict, out: Path, rng: random.Random) -> int:
    """Start training, wait until it has checkpointed once more, then SIGKILL or SIGTERM it at a random moment."""
    ckpt = out / "checkpoint.pt"
    seen = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and (not ckpt.exists() or ckpt.stat().st_mtime_ns == seen):
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.15))
    proc.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM]))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, -signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM), err
    if proc.returncode == 128 + signal.SIGTERM:
        assert err.endswith(f"saved {ckpt}; continue with the same command and --resume\n"), err
    return proc.returncode


def test_kills_at_random_moments_then_resume_reach_the_uninterrupted_weights(tiny_data, tmp_path):
    """Real processes killed (SIGKILL or SIGTERM) at random moments while training, resumed each time:
    the final weights equal an uninterrupted run's bit for bit, the log has each row once, no temp file is left."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAPSRN_TEST_THREADS": "1"}
    flags = [*F.tiny_flags(tiny_data, steps=40, val_every=3, schedule="step"), "--quiet"]
    train = [sys.executable, "-m", "lapsrn", "train", *flags]
    done = subprocess.run(
        [*train, "--out", str(tmp_path / "ref")], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    rng, out, codes = random.Random(14), tmp_path / "killed", []
    cmd = [*train, "--out", str(out), "--resume"]
    while len(codes) < 5 and (not codes or codes[-1] != 0):
        codes.append(_run_until_killed(cmd, env, out, rng))
    if codes[-1] != 0:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
    assert any(c != 0 for c in codes), codes  # at least one kill landed while training
    F.assert_same_weights(tmp_path / "ref", out)
    assert F.log_without_seconds(tmp_path / "ref") == F.log_without_seconds(out)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_signal_while_loading_the_data_stops_with_a_checkpoint(tiny_data, tmp_path, monkeypatch):
    """SIGTERM before the first step: step 0 is checkpointed, and --resume goes on from it."""
    real = T.load_y_images

    def load_then_signal(*args):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args)

    monkeypatch.setattr(T, "load_y_images", load_then_signal)
    with pytest.raises(T.TrainingInterrupted, match="SIGTERM at step 0: saved .*checkpoint.pt"):
        T.train(F.tiny_config(tiny_data, tmp_path / "run"), quiet=True)
    monkeypatch.undo()
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 0
    T.train(F.tiny_config(tiny_data, tmp_path / "run"), resume=True, quiet=True)
    T.train(F.tiny_config(tiny_data, tmp_path / "ref"), quiet=True)
    F.assert_same_weights(tmp_path / "ref", tmp_path / "run")
