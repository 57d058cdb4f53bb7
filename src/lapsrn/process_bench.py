"""Whole-process timing for ``lapsrn bench``: the command a user runs against a minimal OpenCV script.

In-process per-image times leave out what a user also waits for: start-up and
imports, loading the model, decoding, encoding. Here each contender is a fresh
process doing the whole job -- files in, x4 PNG files out -- timed by wall
clock, with its peak RSS from ``wait4``. The jobs: one photo of about 0.5 MP,
a folder (Set14's LR images), and a 64x64 image, where start-up dominates, at x4;
and a 640x360 video clip at x2 (with an AAC track, as clips have), against an
OpenCV script that reads it with VideoCapture and writes with VideoWriter.
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


VIDEO_SCRIPT = '''\
"""The peer for video: VideoCapture -> OpenCV's dnn_superres LapSRN -> VideoWriter (MPEG-4 part 2: OpenCV's wheels
carry no H.264 encoder), at the source's frame rate."""
import sys

import cv2

src, dst, graph, scale = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sr = cv2.dnn_superres.DnnSuperResImpl_create()
sr.readModel(graph)
sr.setModel("lapsrn", scale)
capture = cv2.VideoCapture(src)
fps = capture.get(cv2.CAP_PROP_FPS)
writer = None
while True:
    ok, frame = capture.read()
    if not ok:
        break
    out = sr.upsample(frame)
    if writer is None:
        writer = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, (out.shape[1], out.shape[0]))
    writer.write(out)
writer.release()
'''


@dataclass
class Job:
    """One upscaling job: an input file, folder or video clip, and its scale."""

    name: str
    source: Path
    pixels: int  # LR pixels in the job (of all frames, for a clip)
    scale: int = 4
    frames: int = 0  # a video clip's frames; 0 for images


@dataclass
class WallRow:
    """Median wall time and peak RSS of one contender on one job."""

    job: str
    pixels: int
    method: str
    seconds: float
    rss_mb: float
    vs_opencv: float | None = None  # OpenCV's time over this one: the throughput ratio
    frames: int = 0  # a video job's frames, for frames per second
    scale: int = 4


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


def mux_tone(out, audio, samples: int) -> None:
    """Encode and mux a 440 Hz tone of ``samples`` samples into ``audio``, a mono 48 kHz AAC stream of the
    PyAV container ``out``: the sound track of the clips made here, the bundled sample's and the tests'."""
    import av

    t = np.arange(samples) / 48000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    for k in range(0, tone.shape[1], 1024):
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k : k + 1024]), "fltp", "mono")
        chunk.sample_rate, chunk.pts = 48000, k
        out.mux(audio.encode(chunk))
    out.mux(audio.encode(None))


def prepare_video(photo: Path, work: Path, frames: int = 48, size: tuple[int, int] = (640, 360)) -> Job:
    """A clip panning across ``photo`` (resized to cover the frame with room to move): H.264 at CRF 18, 24 fps,
    with a 440 Hz AAC track. Needs PyAV."""
    import av
    from PIL import Image

    w, h = size
    img = Image.open(photo).convert("RGB")
    cover = max((w + frames) / img.width, (h + frames // 2) / img.height)
    big = np.asarray(img.resize((round(img.width * cover) + 1, round(img.height * cover) + 1), Image.BICUBIC))
    work.mkdir(parents=True, exist_ok=True)
    path = work / "clip.mp4"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24, options={"crf": "18"})
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        audio = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(frames):
            crop = np.ascontiguousarray(big[i // 2 : i // 2 + h, i : i + w])
            out.mux(video.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")))
        out.mux(video.encode(None))
        mux_tone(out, audio, 48000 * frames // 24)
    return Job(f"a {w}x{h} clip of {frames} frames, with audio", path, w * h * frames, scale=2, frames=frames)


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


def run_wall(jobs: list[Job], graphs: Path, work: Path, rounds: int, progress=print) -> list[WallRow]:
    """Every job by both contenders, warm-up first, then `rounds` interleaved timed runs; median per cell.
    ``graphs``: the folder of OpenCV's LapSRN_x{2,4,8}.pb."""
    scripts = {False: work / "opencv_upscale.py", True: work / "opencv_video.py"}
    work.mkdir(parents=True, exist_ok=True)
    scripts[False].write_text(OPENCV_SCRIPT)
    scripts[True].write_text(VIDEO_SCRIPT)

    def commands(job: Job, out: Path) -> dict[str, list[str]]:
        graph = str(graphs / f"LapSRN_x{job.scale}.pb")
        peer = [sys.executable, str(scripts[job.frames > 0]), str(job.source), str(out), graph]
        return {
            "lapsrn upscale (bundled default)": [
                *_lapsrn_command(),
                "upscale",
                "-i",
                str(job.source),
                "-o",
                str(out),
                "-s",
                str(job.scale),
            ],
            f"OpenCV dnn_superres LapSRN_x{job.scale}": peer + ([str(job.scale)] if job.frames else []),
        }

    rows = []
    for j, job in enumerate(jobs):
        outs = {}
        for name in commands(job, work).keys():
            out = work / f"out{j}_{len(outs)}"
            if job.source.is_dir():
                out.mkdir()
            else:
                out = out.with_suffix(".mp4" if job.frames else ".png")
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
                    frames=job.frames,
                    scale=job.scale,
                )
            )
        cv = rows[-1]
        for row in rows[-len(names) :]:
            row.vs_opencv = cv.seconds / row.seconds
    return rows


def markdown(rows: list[WallRow], rounds: int) -> list[str]:
    """The whole-process section of docs/BENCHMARKS.md."""
    lines = [
        "## Whole processes: what a user waits for",
        "",
        f"Each cell is the median wall time of {rounds} runs of a fresh process doing the whole job (start-up, "
        "imports, model load, decode, network, colour, encode), after one untimed warm-up run; contenders "
        "alternate order round by round, with Python's default bytecode cache (PYTHONDONTWRITEBYTECODE unset). "
        "Images at x4 (PNG out), the clip at x2 (lapsrn: H.264 CRF 18 and the audio copied; OpenCV: MPEG-4 "
        "part 2, no audio). x OpenCV is OpenCV's time over this one (throughput ratio); RSS is the process's peak.",
        "",
        "| job | scale | LR pixels | method | wall s | frames/s | x OpenCV | peak RSS MB |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = "-" if r.vs_opencv is None else f"{r.vs_opencv:.2f}"
        fps = f"{r.frames / r.seconds:.2f}" if r.frames else "-"
        lines.append(
            f"| {r.job} | x{r.scale} | {r.pixels:,} | {r.method} | {r.seconds:.2f} | {fps} | {ratio} | {r.rss_mb:.0f} |"
        )
    return [*lines, ""]
