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
