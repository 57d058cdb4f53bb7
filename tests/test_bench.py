"""lapsrn bench: one small run end to end (every method in its own process), and its FLOP count."""

from __future__ import annotations

import re
import subprocess
import sys

from lapsrn.bench import torch_flops_per_pixel

from .conftest import SHARED, shared_path


def test_flops_per_pixel_of_lapsrn_x4_is_the_direct_convolution_count():
    # level 1 at LR size: input conv (1->64) + 10 convs + the 3x3 x2 deconv; level 2 at 2x: 10 convs + deconv;
    # a residual conv (64->1) at 2x and 4x, and the 4x4 image deconvs; per output pixel at 4x
    conv = 2 * 64 * 64 * 9
    lr_px = 1 / 16
    expected = (
        2 * 64 * 9 * lr_px  # input conv
        + 10 * conv * lr_px + conv * lr_px  # level 1 convs + deconv (per input pixel)
        + 2 * 64 * 9 * 4 * lr_px + 2 * 16 * lr_px  # residual conv at 2x, image deconv from 1x
        + 10 * conv * 4 * lr_px + conv * 4 * lr_px  # level 2 convs + deconv
        + 2 * 64 * 9 + 2 * 16 * 4 * lr_px  # residual conv at 4x, image deconv from 2x
    )
    assert abs(torch_flops_per_pixel(str(shared_path("weights/official/LapSRN_x4.mat")), 2) - expected) < 1e-6 * expected


def test_small_bench_writes_the_table(tmp_path):
    out = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, "-m", "lapsrn", "bench", "-d", str(shared_path("datasets/test/Set5")), "-s", "4",
         "--limit", "2", "--big", "48", "--shared", str(SHARED), "--threads", "1", "-o", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "## Set5, x4" in text and "## 48x48 LR, x4" in text and "matmul peak measured here" in text
    set5 = text.split("## 48x48")[0]
    rows = {m.group(1).strip(): m.group(2).split("|") for m in re.finditer(r"^\| ([^|]+) \|(.*)\|$", set5, re.M)}
    ours = rows["lapsrn default (MS-LapSRN D5R2, ours)"]
    bicubic = rows["bicubic"]
    assert float(ours[0]) > float(bicubic[0]) + 1.0  # PSNR: the model beats bicubic on Set5 x4
    opencv = rows["OpenCV dnn_superres LapSRN"]
    assert opencv[4].strip() == "1.00" and float(opencv[3]) > 0  # its own ratio; a throughput
    assert float(ours[5]) > 100  # peak RSS of a process that imported torch, in MB
    assert float(ours[6]) > 0 and float(ours[8]) > 0  # kFLOP/px and % of the matmul peak


def test_bench_without_the_shared_folder_is_one_clear_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lapsrn", "bench", "--shared", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "no such folder" in done.stderr
