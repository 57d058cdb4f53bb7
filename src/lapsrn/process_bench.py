"""Whole-process timing for ``lapsrn bench``: the command a user runs against a minimal OpenCV script.

In-process per-image times leave out what a user also waits for: start-up and
imports, loading the model, decoding, encoding. Here each contender is a fresh
process doing the whole job -- files in, x4 PNG files out -- timed by wall
clock, with its peak RSS from ``wait4``. The jobs: one photo of about 0.5 MP,
a folder (Set14's LR images), and a 64x64 image, where start-up dominates.
Contenders alternate order round by round, after one untimed warm-up run each
(the engine's compiled kernels, Python's bytecode cache and the disk cache are
then as on a user's second run; the first run after installing also compiles
the kernels, once).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPENCV_SCRIPT = '''\
"""The peer: OpenCV's dnn_superres LapSRN, files or a folder in, x4 PNGs out (cv2.imwrite's defaults)."""
import sys
from pathlib import Path

import cv2

src, dst, graph = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
sr = cv2.dnn_superres.DnnSuperResImpl_create()
sr.readModel(graph)
sr.setModel("lapsrn", 4)
files = sorted(src.iterdir()) if src.is_dir() else [src]
for f in files:
    out = dst / f"{f.stem}.png" if src.is_dir() else dst
    cv2.imwrite(str(out), sr.upsample(cv2.imread(str(f))))
'''


@dataclass
class Job:
    """One upscaling job: an input file or folder at x4."""

    name: str
    source: Path
    pixels: int  # LR pixels in the job


@dataclass
class WallRow:
    """Median wall time and peak RSS of one contender on one job."""

    job: str
    pixels: int
    method: str
    seconds: float
    rss_mb: float
    vs_opencv: float | None = None  # OpenCV's time over this one: the throughput ratio


def prepare_jobs(photo: Path, folder_lr: list[Path], work: Path) -> list[Job]:
    """The photo as a JPEG (quality 90, as a camera or the web gives it), the LR folder, a 64x64 PNG crop."""
    from PIL import Image

    work.mkdir(parents=True, exist_ok=True)
    img = Image.open(photo).convert("RGB")
    img.save(work / "photo.jpg", quality=90)
    folder = work / "folder"
    folder.mkdir()
    total = 0
    for f in folder_lr:
        (folder / f.name).write_bytes(f.read_bytes())
        total += int(np.prod(Image.open(f).size))
    img.crop((0, 0, 64, 64)).save(work / "small.png")
    return [
        Job(f"one photo, {img.width}x{img.height} JPEG", work / "photo.jpg", img.width * img.height),
        Job(f"a folder of {len(folder_lr)} images", folder, total),
        Job("one 64x64 image", work / "small.png", 64 * 64),
    ]


def _lapsrn_command() -> list[str]:
    """The installed ``lapsrn`` entry point beside this Python, else ``python -m lapsrn`` (the same start-up)."""
    script = Path(sys.executable).with_name("lapsrn")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lapsrn"]


def _user_environment() -> dict[str, str]:
    """This environment as Python leaves it by default: with its bytecode cache.

    Python keeps each module's compiled bytecode (``__pycache__``) and reuses it from the second run
    on; PYTHONDONTWRITEBYTECODE, set on some machines (this project's among them), stops that, so
    every process would compile the package's source again. Installed packages such as OpenCV's
    have theirs from the install, so only a package run from its source would pay.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process, which must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_user_environment())
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... failed: {err.splitlines()[-1:] or proc.returncode}")
    rss_kb = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    return seconds, rss_kb / 1024


def run_wall(jobs: list[Job], graph: Path, work: Path, rounds: int, progress=print) -> list[WallRow]:
    """Every job by both contenders, warm-up first, then `rounds` interleaved timed runs; median per cell."""
    script = work / "opencv_upscale.py"
    script.write_text(OPENCV_SCRIPT)

    def commands(job: Job, out: Path) -> dict[str, list[str]]:
        return {
            "lapsrn upscale (bundled default)": [
                *_lapsrn_command(),
                "upscale",
                "-i",
                str(job.source),
                "-o",
                str(out),
                "-s",
                "4",
            ],
            "OpenCV dnn_superres LapSRN_x4": [sys.executable, str(script), str(job.source), str(out), str(graph)],
        }

    rows = []
    for j, job in enumerate(jobs):
        outs = {}
        for name in commands(job, work).keys():
            out = work / f"out{j}_{len(outs)}"
            if job.source.is_dir():
                out.mkdir()
            else:
                out = out.with_suffix(".png")
            outs[name] = out
        argvs = {name: commands(job, outs[name])[name] for name in outs}
        for argv in argvs.values():  # warm-up, untimed
            _timed(argv)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in argvs}
        names = list(argvs)
        for r in range(rounds):
            for name in names[r % 2 :] + names[: r % 2]:
                progress(f"whole process: {job.name}: {name} (round {r + 1}/{rounds})")
                times[name].append(_timed(argvs[name]))
        for name in names:
            rows.append(
                WallRow(
                    job.name,
                    job.pixels,
                    name,
                    float(np.median([t for t, _ in times[name]])),
                    max(m for _, m in times[name]),
                )
            )
        cv = rows[-1]
        for row in rows[-len(names) :]:
            row.vs_opencv = cv.seconds / row.seconds
    return rows


def markdown(rows: list[WallRow], rounds: int) -> list[str]:
    """The whole-process section of docs/BENCHMARKS.md."""
    lines = [
        "## Whole processes at x4: what a user waits for",
        "",
        f"Each cell is the median wall time of {rounds} runs of a fresh process doing the whole job (start-up, "
        "imports, model load, decode, network, colour, PNG encode), after one untimed warm-up run; contenders "
        "alternate order round by round, with Python's default bytecode cache (PYTHONDONTWRITEBYTECODE unset). "
        "x OpenCV is OpenCV's time over this one (throughput ratio); RSS is the process's peak.",
        "",
        "| job | LR pixels | method | wall s | x OpenCV | peak RSS MB |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = "-" if r.vs_opencv is None else f"{r.vs_opencv:.2f}"
        lines.append(f"| {r.job} | {r.pixels:,} | {r.method} | {r.seconds:.2f} | {ratio} | {r.rss_mb:.0f} |")
    return [*lines, ""]
