"""`lapsrn report` renders in a real headless Chromium: table and crops present, page not blank."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from lapsrn import protocol as P
from lapsrn.cli import main
from lapsrn.models import MSLapSRN
from lapsrn.weights import save

from .conftest import smooth_image

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is missing: .ci/run installs Debian's chromium package"
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    (tmp / "set").mkdir()
    for i in range(3):
        Image.fromarray(P.im2uint8(smooth_image(rng, 96, 112))).save(tmp / "set" / f"img{i}.png")
    torch.manual_seed(0)
    save(MSLapSRN(depth=1, recursions=1), tmp / "a.safetensors")
    (tmp / "log.csv").write_text("step,loss,lr,seconds,set\n1,0.5,1e-3,1,20.0\n2,0.4,1e-3,2,21.0\n")
    out = tmp / "report.html"
    assert (
        main(
            [
                "report",
                "-d",
                str(tmp / "set"),
                "-s",
                "4",
                "-m",
                str(tmp / "a.safetensors"),
                "--crops",
                "2",
                "--log",
                str(tmp / "log.csv"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    return tmp, out


def test_report_is_self_contained(report):
    _, out = report
    page = out.read_text()
    assert "http://" not in page and "https://" not in page  # no CDN, opens offline
    assert page.count("<img class='crop'") == 2 * 3  # 2 images x (ground truth, bicubic, model)
    assert "id='curve'" in page and "class='best'" in page


def test_report_renders_in_headless_chromium(report):
    tmp, out = report
    profile = tmp / "profile"
    common = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*common, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert len(re.findall(r"<tr>", dom)) >= 3  # summary rows rendered
    assert len(re.findall(r'class="crop"', dom)) == 6
    shot = tmp / "shot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,1600", out.as_uri()], capture_output=True, timeout=120
    )
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (1600, 1200)
    assert img.std() > 20  # not a blank page
    crops_band = img[300:900]  # the crops sit below the summary table: textured, not flat
    assert np.abs(np.diff(crops_band, axis=1)).mean() > 2


def test_report_degrade_scores_and_crops_the_degraded_lr(report):
    tmp, clean = report
    out = tmp / "jpeg.html"
    argv = ["report", "-d", str(tmp / "set"), "-s", "4", "-m", str(tmp / "a.safetensors"), "--crops", "1"]
    assert main([*argv, "--degrade", "jpeg:30", "--texture", "-o", str(out)]) == 0
    page = out.read_text()
    assert "(jpeg:30)" in page and "high-frequency energy" in page
    assert re.search(r"<td[^>]*>\d+\.\d\d / \d\.\d{4} / \d+\.\d\d</td>", page)  # PSNR / SSIM / hf cells

    def bicubic_crop(html: str) -> str:
        return re.search(r"src='(data:image/png;base64,[^']+)' alt='bicubic'", html).group(1)

    assert main([*argv, "-o", str(tmp / "clean1.html")]) == 0
    assert bicubic_crop(page) != bicubic_crop((tmp / "clean1.html").read_text())  # crops from the JPEG LR too
    assert main([*argv, "--degrade", "jpg:30", "-o", str(tmp / "bad.html")]) != 0
    assert not (tmp / "bad.html").exists()


def test_report_crops_images_named_from_any_dataset(report, capsys):
    tmp, _ = report
    other = tmp / "other"
    other.mkdir(exist_ok=True)
    Image.fromarray(P.im2uint8(smooth_image(np.random.default_rng(1), 80, 80))).save(other / "zz.png")
    argv = ["report", "-d", str(tmp / "set"), "-d", str(other), "-s", "4", "-m", str(tmp / "a.safetensors")]
    assert main([*argv, "--images", "zz", "img1", "-o", str(tmp / "any.html")]) == 0
    page = (tmp / "any.html").read_text()
    assert page.count("<img class='crop'") == 2 * 3 and "zz x4" in page and "img1 x4" in page
    capsys.readouterr()
    assert main([*argv, "--images", "nope", "-o", str(tmp / "none.html")]) != 0
    err = capsys.readouterr().err.strip()
    assert "no image named nope" in err and len(err.splitlines()) == 1
