"""``lapsrn app`` in a real browser: Debian's Chromium driven by Playwright against the command as a user starts it.

CI (.ci/run) installs Chromium with apt; a missing browser fails here, it does not skip. With
LAPSRN_APP_SCREENSHOT=path the run also saves a screenshot of the page with its results
(``scripts/app_screenshot.sh`` makes the README's that way).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src/lapsrn/assets/sample.png"
LOCAL = {"127.0.0.1", "localhost"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """``lapsrn app`` on a free local port, as a user starts it, without PyTorch; stopped (and checked alive)
    at the end."""
    port = free_port()
    log = open(os.devnull, "w")  # noqa: SIM115 -- closed below
    no_torch = "import sys; sys.modules['torch'] = None\nfrom lapsrn.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(  # as if PyTorch were not installed: the page needs none
        [sys.executable, "-c", no_torch, "app", "--port", str(port)], stdout=log, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "lapsrn app exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "lapsrn app did not answer in two minutes"
        time.sleep(0.5)
    yield url
    assert proc.poll() is None, "the server died during the tests"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: .ci/run installs it (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A fresh tab on the app that lets only this machine's addresses through and records anything else: the
    page must work offline."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.outside = []

    def route(r):
        if urlparse(r.request.url).hostname in LOCAL:
            r.continue_()
        else:
            tab.outside.append(r.request.url)
            r.abort()

    tab.route("**/*", route)
    tab.goto(server)
    tab.wait_for_selector("#run")
    yield tab
    context.close()


def upscale(tab, *files: Path, models: tuple[str, ...] = ("default",), scale: str = "4") -> str:
    """Drop files, pick the scale and models, press Upscale, wait for the run to end; returns the message."""
    tab.locator("#uploads input[type=file]").set_input_files([str(f) for f in files])
    tab.locator("#scale").get_by_label(scale, exact=True).check()
    for name in ("default", "real", "gan", "bicubic"):
        box = tab.locator("#models").get_by_label(name, exact=True)
        box.check() if name in models else box.uncheck()
    return press_upscale(tab)


def message(tab) -> str:
    """The page's message, without the progress text Gradio overlays on it."""
    return tab.locator("#message").get_by_test_id("markdown").inner_text().strip()


WATCH = """() => {
    const box = document.querySelector('#message');
    window.said = [];
    new MutationObserver(() => {
        const md = box.querySelector('[data-testid=markdown]');
        if (md) window.said.push(md.innerText.trim());
    }).observe(box, {subtree: true, childList: true, characterData: true});
}"""
ENDED = """() => {
    const i = window.said.findIndex(t => t.startsWith('Waiting for the queue'));
    return i >= 0 && window.said.slice(i).some(t => t.startsWith('Done:'));
}"""


def press_upscale(tab, then=None, timeout: float = 180) -> str:
    """Press Upscale (and run ``then`` meanwhile), then wait for this run's last message: every message the page
    shows after the press is watched, so the previous run's "Done:" is never taken for this one's."""
    tab.evaluate(WATCH)
    tab.locator("#run").click()
    if then:
        then()
    tab.wait_for_function(ENDED, timeout=timeout * 1000)
    tab.wait_for_timeout(300)  # the last update's images
    return message(tab)


def slider_images(tab, elem: str) -> list[tuple[str, int]]:
    """(file name, natural width) of each image a slider shows, once loaded."""
    imgs = tab.locator(f"#{elem} img")
    imgs.first.wait_for()
    out = []
    for i in range(imgs.count()):
        img = imgs.nth(i)
        tab.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=img.element_handle())
        out.append((img.get_attribute("src").rsplit("/", 1)[-1], img.evaluate("e => e.naturalWidth")))
    return out


def test_upscale_compare_and_download_equal_the_command(page, tmp_path):
    """The sample at x4 with default and real: both sliders show the right pair at the output size, and the
    downloaded default output is byte for byte what `lapsrn upscale` writes."""
    assert upscale(page, SAMPLE, models=("default", "real")) == "Done: 2 output(s) at x4."
    assert slider_images(page, "before") == [("sample_original.png", 640), ("sample_x4_default.png", 640)]
    assert slider_images(page, "versus") == [("sample_x4_default.png", 640), ("sample_x4_real.png", 640)]
    link = page.locator("#downloads a[download='sample_x4_default.png']")
    with page.expect_download() as got:
        link.click()
    downloaded = tmp_path / "downloaded.png"
    got.value.save_as(downloaded)
    reference = tmp_path / "reference.png"
    subprocess.run(
        [sys.executable, "-m", "lapsrn", "upscale", "-i", str(SAMPLE), "-o", str(reference), "-s", "4", "--quiet"],
        check=True,
    )
    assert downloaded.read_bytes() == reference.read_bytes()
    names = [a.get_attribute("download") for a in page.locator("#downloads a[download]").all()]
    assert names == [
        "sample_x4_default.png",
        "sample_x4_real.png",
        "lapsrn_outputs.zip",
    ]
    if os.environ.get("LAPSRN_APP_SCREENSHOT"):
        page.screenshot(path=os.environ["LAPSRN_APP_SCREENSHOT"], full_page=True)
    assert page.outside == []  # nothing fetched from outside this machine


def bomb(path: Path) -> Path:
    """A PNG whose header claims 60000x60000 pixels over a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    sig = b"\x89PNG\r\n\x1a\n"
    path.write_bytes(sig + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b""))
    return path


def test_bad_uploads_get_a_message_and_the_next_upload_works(page, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image\n")
    said = upscale(page, not_image, bomb(tmp_path / "bomb.png"), models=("default",), scale="2")
    assert said.splitlines()[0] == "Done: 0 output(s) at x2."
    assert "notes.png, default: not an image file Pillow can read" in said
    assert "bomb.png, default: output 120000x120000 would need about 214.6 GB, over the" in said
    assert "Traceback" not in page.content()
    page.locator("#uploads button[aria-label='Clear']").first.click()
    assert upscale(page, SAMPLE, models=("bicubic",), scale="2") == "Done: 1 output(s) at x2."
    assert slider_images(page, "before") == [("sample_original.png", 320), ("sample_x2_bicubic.png", 320)]
    assert page.outside == []


def test_sixteen_bit_alpha_and_cmyk_are_upscaled_not_refused(page, tmp_path):
    """Inputs other demos refuse are handled as the command handles them: each gives its output."""
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((20, 24)) * 65535).astype(np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray((rng.random((20, 24, 4)) * 255).astype(np.uint8), "RGBA").save(tmp_path / "alpha.png")
    Image.open(SAMPLE).convert("CMYK").save(tmp_path / "cmyk.jpg")
    said = upscale(page, tmp_path / "deep.png", tmp_path / "alpha.png", tmp_path / "cmyk.jpg", scale="2")
    assert said == "Done: 3 output(s) at x2."


def test_two_tabs_at_once_are_queued(browser, server, tmp_path):
    """Two sessions press Upscale together: one job runs, the other waits its turn; both finish."""
    tabs = []
    for _ in range(2):
        context = browser.new_context()
        tab = context.new_page()
        tab.goto(server)
        tab.wait_for_selector("#run")
        tab.locator("#uploads input[type=file]").set_input_files(str(SAMPLE))
        tab.locator("#scale").get_by_label("2", exact=True).check()
        tab.evaluate(WATCH)
        tabs.append(tab)
    for tab in tabs:
        tab.locator("#run").click()
    for tab in tabs:
        tab.wait_for_function(ENDED, timeout=180_000)
        assert message(tab) == "Done: 1 output(s) at x2."
        tab.context.close()


def test_cancel_stops_a_long_image(page, tmp_path):
    """Cancel during a long x8 (about a quarter of a minute here): the run stops at the engine's next band."""
    rng = np.random.default_rng(1)
    big = tmp_path / "big.png"
    Image.fromarray((rng.random((360, 480, 3)) * 255).astype(np.uint8)).save(big)
    page.locator("#uploads input[type=file]").set_input_files(str(big))
    page.locator("#scale").get_by_label("8", exact=True).check()
    start = []

    def cancel_later() -> None:
        page.wait_for_timeout(3000)
        start.append(time.monotonic())
        page.locator("#cancel").click()

    said = press_upscale(page, then=cancel_later, timeout=60)
    assert said.splitlines() == ["Done: 0 output(s) at x8.", "", "Cancelled."]
    assert time.monotonic() - start[0] < 10


def test_cancel_reaches_a_queued_job(browser, server, tmp_path):
    """A job cancelled while another tab's runs is dropped when its turn comes, not run."""
    rng = np.random.default_rng(2)
    big = tmp_path / "busy.png"
    Image.fromarray((rng.random((240, 320, 3)) * 255).astype(np.uint8)).save(big)
    tabs = []
    for source, scale in ((big, "8"), (SAMPLE, "2")):
        tab = browser.new_context().new_page()
        tab.goto(server)
        tab.wait_for_selector("#run")
        tab.locator("#uploads input[type=file]").set_input_files(str(source))
        tab.locator("#scale").get_by_label(scale, exact=True).check()
        tab.evaluate(WATCH)
        tabs.append(tab)
    busy, queued = tabs
    busy.locator("#run").click()
    busy.wait_for_timeout(1000)
    queued.locator("#run").click()
    queued.wait_for_timeout(500)
    queued.locator("#cancel").click()
    busy.locator("#cancel").click()
    for tab in tabs:
        tab.wait_for_function(ENDED, timeout=120_000)
    assert message(queued).splitlines() == ["Done: 0 output(s) at x2.", "", "Cancelled."]
    for tab in tabs:
        tab.context.close()


def test_own_weights_and_the_pickers(page, tmp_path):
    """The authors' LapSRN x4 .mat dropped as weights runs beside a bundled model; the pickers swap what the
    model-vs-model slider shows; a weights file that is not one is named, once, with its reason."""
    from .conftest import shared_path

    page.locator("#weights input[type=file]").set_input_files(str(shared_path("weights/official/LapSRN_x4.mat")))
    assert upscale(page, SAMPLE, models=("gan",)) == "Done: 2 output(s) at x4."
    assert slider_images(page, "versus") == [("sample_x4_gan.png", 640), ("sample_x4_LapSRN_x4.png", 640)]
    page.locator("#left input").click()
    page.get_by_role("option", name="LapSRN_x4").click()
    page.wait_for_timeout(500)
    assert [name for name, _ in slider_images(page, "versus")] == ["sample_x4_LapSRN_x4.png", "sample_x4_gan.png"]
    assert [name for name, _ in slider_images(page, "before")] == ["sample_original.png", "sample_x4_LapSRN_x4.png"]
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not weights")
    page.locator("#weights button[aria-label='Clear']").first.click()
    page.locator("#weights input[type=file]").set_input_files(str(junk))
    said = upscale(page, SAMPLE, SAMPLE, models=(), scale="2")
    assert said.startswith("Done: 0 output(s) at x2.\n\njunk.safetensors: ") and said.count("junk") == 1
    assert "/tmp" not in said  # no temp folder in the message
    assert page.outside == []


def test_uploads_with_one_name_keep_their_outputs_apart(tmp_path):
    """photo.png and photo.jpg, or the same name twice, get outputs of their own."""
    from lapsrn.app import display_names

    got = display_names([Path("a/photo.png"), Path("b/photo.jpg"), Path("c/photo.png"), Path("d/x.png")])
    assert got == [
        ("photo.png", "photo_png"),
        ("photo.jpg", "photo_jpg"),
        ("photo.png (2)", "photo_png_2"),
        ("x.png", "x"),
    ]


def test_bicubic_in_bands_equals_the_whole_image(tmp_path):
    """The baseline's file, made band by band to bound memory, is the protocol's bicubic of the whole image."""
    from lapsrn import colour as imaging
    from lapsrn import protocol as P
    from lapsrn.app import bicubic_file

    rng = np.random.default_rng(3)
    img = (rng.random((37, 23, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    want = P.im2uint8(np.clip(P.imresize(img / 255.0, 4), 0, 1))
    old = imaging.BAND_PIXELS
    try:
        imaging.BAND_PIXELS = 23 * 16 * 5  # bands of 5 rows: many bands, each with its margins
        bicubic_file(tmp_path / "in.png", tmp_path / "out.png", 4)
    finally:
        imaging.BAND_PIXELS = old
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), want)
