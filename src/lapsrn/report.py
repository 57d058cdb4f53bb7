"""``lapsrn report``: one self-contained HTML page comparing models, like the papers' figures.

The page holds the protocol's PSNR/SSIM table per dataset and scale (best
per column in bold), sortable per-image scores, zoomed crops of ground
truth / bicubic / each model at the same spot, and optionally the training
curve. Everything is embedded (base64 PNG, inline CSS and JS): it opens
offline, with no CDN.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import evaluate as E
from . import protocol as P

CROP = 48  # HR pixels of a crop side, shown zoomed 4x


@dataclass
class Method:
    """A named way of making an SR image from an LR one."""

    name: str
    run: E.Method


def _png_data_uri(img: np.ndarray, zoom: int = 1) -> str:
    """float [0, 1] image -> data: URI of a PNG, enlarged with nearest neighbour so pixels show."""
    from PIL import Image

    u8 = P.im2uint8(img)
    if zoom > 1:
        u8 = u8.repeat(zoom, axis=0).repeat(zoom, axis=1)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _crop_spot(hr: np.ndarray, scale: int) -> tuple[int, int]:
    """Top-left of the CROP window with the most HR detail (edges, text): where SR methods differ."""
    y = P.rgb2ycbcr(hr)[..., 0] if hr.ndim == 3 else hr
    detail = np.abs(np.diff(y, axis=0))[:, :-1] + np.abs(np.diff(y, axis=1))[:-1, :]
    h, w = detail.shape
    best, spot = -1.0, (0, 0)
    step = max(CROP // 2, 1)
    for top in range(scale, max(h - CROP - scale, scale) + 1, step):
        for left in range(scale, max(w - CROP - scale, scale) + 1, step):
            energy = float(detail[top : top + CROP, left : left + CROP].sum())
            if energy > best:
                best, spot = energy, (top, left)
    return spot


def _per_image(rows: list[E.Row]) -> str:
    """Sortable table: one row per (dataset, scale, image), one PSNR column per method."""
    methods = list(dict.fromkeys(r.method for r in rows))
    scores: dict[tuple[str, int, str], dict[str, E.ImageScore]] = {}
    for r in rows:
        for s in r.scores:
            scores.setdefault((r.dataset, r.scale, s.image), {})[r.method] = s
    head = "<th>dataset</th><th>scale</th><th>image</th>" + "".join(f"<th>{html.escape(m)} PSNR</th>" for m in methods)
    body = []
    for (d, sc, img), by_method in scores.items():
        cells = "".join(f"<td>{by_method[m].psnr:.2f}</td>" if m in by_method else "<td></td>" for m in methods)
        body.append(f"<tr><td>{html.escape(d)}</td><td>{sc}</td><td>{html.escape(img)}</td>{cells}</tr>")
    return (
        f"<table id='per-image' class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _crops(hr_images: dict[str, np.ndarray], methods: list[Method], scale: int, degrade: list | None = None) -> str:
    """For each chosen image: the same zoomed window in ground truth, bicubic and every model (from the same
    LR as the tables: ``degrade``'s steps applied to it, with the noise seeded by the image's name)."""
    from .colour import bicubic
    from .degrade import degrade_lr

    blocks = []
    for name, hr_raw in hr_images.items():
        hr, lr = E.prepare(hr_raw, scale)
        if degrade:
            lr = degrade_lr(lr, degrade, name)
        outputs = [("ground truth", hr), ("bicubic", bicubic(lr, scale))] + [
            (m.name, m.run(lr, scale)) for m in methods
        ]
        top, left = _crop_spot(hr, scale)
        figs = []
        for label, img in outputs:
            crop = img[top : top + CROP, left : left + CROP]
            caption = html.escape(label)
            if label != "ground truth":
                psnr, _ = E.score(hr, img, scale)
                caption += f"<br>{psnr:.2f} dB"
            img_tag = f"<img class='crop' src='{_png_data_uri(crop, 4)}' alt='{html.escape(label)}'>"
            figs.append(f"<figure>{img_tag}<figcaption>{caption}</figcaption></figure>")
        whole = _png_data_uri(hr)
        blocks.append(
            f"<section class='crops'><h3>{html.escape(name)} x{scale} (crop at y={top}, x={left})</h3>"
            f"<figure><img class='thumb' src='{whole}' alt='{html.escape(name)}'></figure>{''.join(figs)}</section>"
        )
    return "".join(blocks)


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}
th{background:#eee}.best{font-weight:bold;background:#dfd}
figure{display:inline-block;margin:4px;text-align:center;vertical-align:top}
img.crop{width:192px;height:192px;image-rendering:pixelated;border:1px solid #888}
img.thumb{max-width:192px;max-height:192px;border:1px solid #888}
.sortable th{cursor:pointer}
"""

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0];
    var rows = Array.from(body.rows), asc = th.dataset.asc !== '1';
    rows.sort(function(a, b){
      var x = a.cells[col].textContent, y = b.cells[col].textContent, nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
    th.dataset.asc = asc ? '1' : '0';
  });
});
"""


def build_report(
    rows: list[E.Row],
    crop_images: dict[str, np.ndarray],
    methods: list[Method],
    crop_scale: int,
    training_log: Path | None = None,
    degrade: list | None = None,
    texture: bool = False,
) -> str:
    """The whole HTML page as a string; ``degrade``: the LR's steps after the protocol's downscale (crops too);
    ``texture``: the tables add the high-frequency energy ratio to the ground truth's."""
    curve = ""
    if training_log is not None:
        import tempfile

        from .plot import plot_logs

        with tempfile.TemporaryDirectory() as tmp:
            plot_logs([training_log], Path(tmp) / "curve.png")
            data = (Path(tmp) / "curve.png").read_bytes()
        uri = f"data:image/png;base64,{base64.b64encode(data).decode()}"
        curve = f"<h2>Training curve</h2><img id='curve' src='{uri}' alt='training curve'>"
    degraded = ""
    if degrade:
        from .degrade import describe

        degraded = f"Then the LR is degraded: {html.escape(describe(degrade))} (crops too). "
    measures = ""
    if texture:
        measures = "Cells: PSNR / SSIM / high-frequency energy over the ground truth's (1 = as much fine detail). "
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>lapsrn report</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>lapsrn report</h1>"
        "<p>PSNR (dB) / SSIM on the Y channel (BT.601), scale pixels shaved, MATLAB-bicubic LR: the papers' protocol. "
        f"{degraded}{measures}Best per column in bold.</p>"
        f"{E.summary_table(E.Report(rows).to_json()['rows'], html=True, hf=texture)}"
        f"<h2>Zoomed crops</h2>{_crops(crop_images, methods, crop_scale, degrade)}"
        f"{curve}<h2>Per image (click a header to sort)</h2>{_per_image(rows)}"
        f"<script>{SORT_JS}</script></body></html>"
    )
