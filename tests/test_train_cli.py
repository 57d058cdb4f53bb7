"""lapsrn train as a user meets it: the documented commands run, choices refuse typos, folders are not clobbered."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import fields
from importlib.metadata import version
from pathlib import Path

import pytest

from lapsrn.cli import build_parser, main
from lapsrn.config import PRESETS, TrainConfig, check_batch, make_config

from .conftest import REPO, SHARED
from .train_fixtures import one_thread_fixture, tiny_data_fixture, tiny_flags  # noqa: F401 (fixtures)

DOCS = [REPO / "README.md", REPO / "docs" / "TRAINING.md"]
# Appended to every documented command: a few steps of a small network on tiny patches, so each runs
# in a second. The batch is left as written: the preset's default batch must split over the scales.
QUICK = ["--steps", "2", "--patch", "16", "--depth", "1", "--recursions", "1", "--val-every", "1", "--quiet"]


def documented_commands(doc: Path) -> list[list[str]]:
    """The `lapsrn train`, torchrun and `lapsrn plot` lines of a doc's bash blocks, comments stripped."""
    blocks = re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.DOTALL)
    lines = [shlex.split(line, comments=True) for block in blocks for line in block.splitlines()]
    return [w for w in lines if w[:2] in (["lapsrn", "train"], ["lapsrn", "plot"]) or w[:1] == ["torchrun"]]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_training_commands_run_as_written(doc, tiny_data, tmp_path, monkeypatch, capsys):
    """Each command in order in one folder, with QUICK appended and tiny data for the default folders.

    torchrun lines are parsed and checked as their ranks would (config, batch over the ranks),
    not launched: test_two_process_ddp_matches_one_process runs torchrun itself.
    """
    commands = documented_commands(doc)
    assert any(c[:2] == ["lapsrn", "train"] for c in commands) and any(c[0] == "torchrun" for c in commands)
    train, val = tiny_data
    monkeypatch.chdir(tmp_path)
    for words in commands:
        if words[:2] == ["lapsrn", "plot"]:
            assert main(words[1:]) == 0, capsys.readouterr().err
            continue
        argv = words[words.index("train") :] + QUICK
        if "--train-dirs" in words:  # the user's own folder: make it, with the tiny images
            for folder in words[words.index("--train-dirs") + 1 :]:
                if folder.startswith("--"):
                    break
                shutil.copytree(train, folder)
        else:
            argv += ["--train-dirs", str(train)]
        if "--no-val" not in words and "--val-dirs" not in words:
            argv += ["--val-dirs", str(val)]
        if words[0] == "torchrun":
            args = build_parser().parse_args(argv)
            cfg = make_config(args.preset, args.config, **{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
            check_batch(cfg.batch, cfg.scales, ranks=int(words[words.index("--nproc-per-node") + 1]))
            continue
        assert main(argv) == 0, f"{shlex.join(words)}: {capsys.readouterr().err}"
        out = Path(build_parser().parse_args(argv).out or "runs/lapsrn")
        assert (out / "model.safetensors").is_file() and (out / "checkpoint.pt").is_file()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_defaults_split_over_the_scales_and_two_ranks(preset):
    cfg = make_config(preset)
    check_batch(cfg.batch, cfg.scales, ranks=1)
    check_batch(cfg.batch, cfg.scales, ranks=2)


@pytest.mark.parametrize(
    ("flag", "value", "valid"),
    [
        ("--loss", "l1", "'charbonnier', 'l2'"),
        ("--arch", "nope", "'MSLapSRN', 'LapSRN', 'OneStep'"),
        ("--optimizer", "sgdd", "'sgd', 'adam'"),
        ("--schedule", "cosin", "'step', 'cosine'"),
        ("--reduction", "avg", "'mean', 'sum'"),
        ("--skip", "XS", "'NS', 'DS', 'SS'"),
        ("--init-scheme", "xavier", "'kaiming', 'paper'"),
        ("--device", "gpu", "'auto', 'cpu', 'cuda'"),
        ("--preset", "quick", "'fast', 'paper'"),
    ],
)
def test_unknown_choice_is_one_line_naming_the_valid_ones(flag, value, valid, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", flag, value, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.count("\n") == 1 and f"invalid choice: '{value}' (choose from {valid})" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"loss": "l1"}, "loss: unknown value 'l1' (choose from charbonnier, l2)"),
        ({"arch": "nope"}, "arch: unknown value 'nope' (choose from MSLapSRN, LapSRN, OneStep)"),
        ({"optimizer": "sgdd"}, "optimizer: unknown value 'sgdd' (choose from sgd, adam)"),
        ({"schedule": "cosin"}, "schedule: unknown value 'cosin' (choose from step, cosine)"),
        ({"lr": "0.1"}, "lr: expected float, got '0.1'"),
        ({"steps": 0}, "steps: must be at least 1, got 0"),
        ({"scales": [2, 3]}, "scales must be distinct powers of two from 2, got 2 3"),
        ({"lossy": 1}, "unknown config keys: lossy"),
    ],
)
def test_config_file_values_are_checked_like_flags(values, message, tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps(values))
    assert main(["train", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lapsrn: error: {message}")
    assert not (tmp_path / "run").exists()


def test_a_batch_that_ranks_cannot_share_says_what_to_change():
    with pytest.raises(
        ValueError,
        match=r"batch 32 splits over the scales 2 4 8 as 11\+11\+10 patches, which 2 ranks "
        r"cannot share evenly: use a multiple of 6, e.g. --batch 30 or 36",
    ):
        check_batch(32, [2, 4, 8], ranks=2)
    with pytest.raises(ValueError, match=r"as 2\+2\+0 patches, leaving a scale without any: .* --batch 3 or 6"):
        make_config(batch=4)


def test_every_train_flag_has_help_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split("options:")[1].split())
    starts = {f.name: text.index(f"--{f.name.replace('_', '-')} ") for f in fields(TrainConfig)}
    for name, start in starts.items():
        end = min([s for s in starts.values() if s > start], default=len(text))
        assert "(default: " in text[start:end], name
    assert (
        "--batch BATCH patches per step over all scales and ranks "
        "(default: 48 with --preset fast, 64 with --preset paper)" in text
    )


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"lapsrn {version('lapsrn')}\n"


def test_default_data_folders_follow_lapsrn_shared(tmp_path):
    """The defaults are under $LAPSRN_SHARED/datasets; a missing one is one line, before anything is written."""
    env = {**os.environ, "LAPSRN_SHARED": str(tmp_path / "nowhere")}
    done = subprocess.run(
        [sys.executable, "-m", "lapsrn", "train", "--out", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"lapsrn: error: {tmp_path}/nowhere/datasets/train/T91: no such training folder (give "
        "--train-dirs DIR..., or set LAPSRN_SHARED to the folder that holds datasets/)\n"
    )
    assert not (tmp_path / "run").exists()
    defaults = TrainConfig()  # this process: the clone's ../shared, or LAPSRN_SHARED as conftest reads it
    assert [Path(d) for d in defaults.train_dirs] == [SHARED / "datasets/train/T91", SHARED / "datasets/train/BSDS200"]
    assert all(Path(d).is_dir() for d in defaults.train_dirs + defaults.val_dirs)


def test_an_existing_run_is_refused_unless_resume_or_overwrite(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    flags = [*tiny_flags(tiny_data, steps=2), "--out", str(out), "--quiet"]
    assert main(["train", *flags]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["train", *flags]) == 1
    assert capsys.readouterr().err == (
        f"lapsrn: error: {out} already holds a training run (config.json, log.csv, "
        "checkpoint.pt, model.safetensors): add --resume to continue it or --overwrite "
        "to replace it\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(["train", *flags, "--resume", "--overwrite"]) == 1
    assert "contradict" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    assert main(["train", *flags, "--seed", "5", "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite replaces the run's files only
    assert json.loads((out / "config.json").read_text())["seed"] == 5


@pytest.mark.parametrize("no_val", [["--no-val"], ["--val-dirs"]])
def test_no_val_trains_without_validation_columns(no_val, tiny_data, tmp_path):
    out = tmp_path / "run"
    flags = tiny_flags(tiny_data, steps=2, val_every=1, val_dirs=None)
    assert main(["train", *flags, *no_val, "--out", str(out), "--quiet"]) == 0
    assert (out / "log.csv").read_text().splitlines()[0] == "step,loss,lr,seconds"
    assert len((out / "log.csv").read_text().splitlines()) == 3
