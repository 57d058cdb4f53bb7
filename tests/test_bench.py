"""lapsrn bench: one small run end to end (every method in its own process), and its FLOP count."""

from __future__ import annotations

import re
import subprocess
import sys

from lapsrn.bench import blas_library, cpu_model, flops_per_pixel
from lapsrn.engine.native import target_cpu
from lapsrn.weights import read

from .conftest import SHARED, shared_path


def test_flops_per_pixel_of_lapsrn_x4_is_the_direct_convolution_count():
    # level 1 at LR size: input conv (1->64) + 10 convs + the 3x3 x2 deconv; level 2 at 2x: 10 convs + deconv;
    # a residual conv (64->1) at 2x and 4x, and the 4x4 image deconvs; per output pixel at 4x
    conv = 2 * 64 * 64 * 9
    lr_px = 1 / 16
    expected = (
        2 * 64 * 9 * lr_px  # input conv
        + 10 * conv * lr_px
        + conv * lr_px  # level 1 convs + deconv (per input pixel)
        + 2 * 64 * 9 * 4 * lr_px
        + 2 * 16 * lr_px  # residual conv at 2x, image deconv from 1x
        + 10 * conv * 4 * lr_px
        + conv * 4 * lr_px  # level 2 convs + deconv
        + 2 * 64 * 9
        + 2 * 16 * 4 * lr_px  # residual conv at 4x, image deconv from 2x
    )
    spec = read(shared_path("weights/official/LapSRN_x4.mat"))[0]
    assert abs(flops_per_pixel(spec, 2) - expected) < 1e-6 * expected


def test_small_bench_writes_the_table(tmp_path):
    out = tmp_path / "bench.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lapsrn",
            "bench",
            "-d",
            str(shared_path("datasets/test/Set5")),
            "-s",
            "4",
            "--limit",
            "2",
            "--big",
            "48",
            "--shared",
            str(SHARED),
            "--threads",
            "1",
            "--wall-rounds",
            "0",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "## Set5, x4" in text and "## 48x48 LR, x4" in text and "matmul peak measured here" in text
    assert f"Machine: {cpu_model()}, 1 threads" in text and f"BLAS {blas_library()}, the engine's kernels" in text
    assert f"kernels compiled for {target_cpu()[0]}." in text
    assert blas_library() != "unknown"  # NumPy's BLAS, and which kernels it runs here, is found
    set5 = text.split("## 48x48")[0]
    rows = {m.group(1).strip(): m.group(2).split("|") for m in re.finditer(r"^\| ([^|]+) \|(.*)\|$", set5, re.M)}
    ours = rows["lapsrn default (MS-LapSRN D5R2, ours)"]
    bicubic = rows["bicubic"]
    assert float(ours[0]) > float(bicubic[0]) + 1.0  # PSNR: the model beats bicubic on Set5 x4
    opencv = rows["OpenCV dnn_superres LapSRN"]
    assert opencv[4].strip() == "1.00" and float(opencv[3]) > 0  # its own ratio; a throughput
    assert float(ours[5]) > 30  # peak RSS of the whole process, in MB
    assert float(ours[6]) > 0 and float(ours[8]) > 0  # kFLOP/px and % of the matmul peak


def test_bench_without_the_shared_folder_is_one_clear_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lapsrn", "bench", "--shared", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "no such folder" in done.stderr


def test_whole_processes_run_with_pythons_bytecode_cache(monkeypatch):
    """The timed processes get Python's default, a bytecode cache, whatever this shell says; nothing else changes."""
    from lapsrn import process_bench

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("LAPSRN_CACHE_DIR", "/somewhere")
    check = (
        "import os, sys; "
        "sys.exit('PYTHONDONTWRITEBYTECODE' in os.environ or os.environ['LAPSRN_CACHE_DIR'] != '/somewhere')"
    )
    seconds, rss_mb = process_bench._timed([sys.executable, "-c", check])  # raises if the child exits non-zero
    assert seconds > 0 and rss_mb > 1


def test_whole_process_timing_runs_both_commands(tmp_path):
    """The whole-process jobs: both contenders write every output, and the table has their ratio."""
    from PIL import Image

    from lapsrn import process_bench

    hr = shared_path("datasets/test/Set5/baby.png")
    lr = []
    for i, box in enumerate([(0, 0, 40, 30), (100, 100, 124, 140)]):
        lr.append(tmp_path / f"lr{i}.png")
        Image.open(hr).crop(box).save(lr[-1])
    jobs = process_bench.prepare_jobs(hr, lr, tmp_path / "wall")
    assert [j.pixels for j in jobs] == [512 * 512, 40 * 30 + 24 * 40, 64 * 64]
    jobs = jobs[1:]  # the folder and the 64x64 image: the photo takes OpenCV ~10 s here
    rows = process_bench.run_wall(jobs, shared_path("peers/opencv"), tmp_path / "wall", 1, lambda m: None)
    assert len(rows) == 4 and all(r.seconds > 0 and r.rss_mb > 10 for r in rows)
    assert [r.vs_opencv for r in rows if r.method.startswith("OpenCV")] == [1.0, 1.0]
    written = sorted(p.name for p in (tmp_path / "wall").glob("out0_*/*.png"))
    assert written == ["lr0.png", "lr0.png", "lr1.png", "lr1.png"]
    assert Image.open(tmp_path / "wall" / "out0_0" / "lr1.png").size == (96, 160)
    table = "\n".join(process_bench.markdown(rows, 1))
    assert "| a folder of 2 images | x4 | 2,160 | lapsrn upscale (bundled default) |" in table


def test_whole_process_video_job(tmp_path):
    """The video row: a clip both contenders upscale x2 whole, frames per second in the table."""
    import av

    from lapsrn import process_bench

    job = process_bench.prepare_video(shared_path("datasets/test/Set5/baby.png"), tmp_path / "v", 4, (64, 36))
    assert (job.scale, job.frames, job.pixels) == (2, 4, 64 * 36 * 4)
    rows = process_bench.run_wall([job], shared_path("peers/opencv"), tmp_path / "v", 1, lambda m: None)
    assert [r.method for r in rows] == ["lapsrn upscale (bundled default)", "OpenCV dnn_superres LapSRN_x2"]
    for out in (tmp_path / "v").glob("out0_*.mp4"):
        with av.open(str(out)) as c:
            assert [(f.width, f.height) for f in c.decode(video=0)] == [(128, 72)] * 4
    table = "\n".join(process_bench.markdown(rows, 1))
    assert f"| {job.name} | x2 | 9,216 | OpenCV dnn_superres LapSRN_x2 | {rows[1].seconds:.2f} | " in table
