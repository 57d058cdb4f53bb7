"""Scoring a model on folders of HR images with the papers' protocol (see ``protocol``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import protocol as P

Method = Callable[[np.ndarray, float], np.ndarray]  # float64 LR image, scale -> SR image


@dataclass
class ImageScore:
    """Scores of one image at one scale."""

    image: str
    psnr: float
    ssim: float
    seconds: float
    hf: float = math.nan  # high-frequency energy relative to the ground truth's (``hf_ratio``)


def prepare(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR, LR) as test_LapSRN.m makes them: gray as 3 equal channels, mod-crop, float LR."""
    hr = P.modcrop(P.gray_to_rgb(hr), scale)
    return hr, P.imresize(hr, 1.0 / scale)


def scored_y(img: np.ndarray, scale: int) -> np.ndarray:
    """evaluate_SR.m's view of an image: quantised to uint8, Y of BT.601, `scale` pixels shaved."""
    return P.shave(P.rgb2ycbcr(P.im2uint8(img) / 255.0)[..., 0], scale)


def score(hr: np.ndarray, sr: np.ndarray, scale: int) -> tuple[float, float]:
    """evaluate_SR.m: PSNR and SSIM of the scored Y planes."""
    gt_y, sr_y = scored_y(hr, scale), scored_y(sr, scale)
    return P.psnr(gt_y, sr_y), P.ssim(gt_y, sr_y)


def laplacian_energy(y: np.ndarray) -> float:
    """Mean squared response of the 3x3 Laplacian: the energy of the finest detail (edges, texture, noise)."""
    lap = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
    return float(np.mean(lap**2))


def hf_ratio(gt_y: np.ndarray, sr_y: np.ndarray) -> float:
    """The SR image's high-frequency energy over the ground truth's, on the protocol's shaved 8-bit Y.

    An offline texture measure, needing no learned weights: 1 means as much fine
    detail as the ground truth, below 1 smoother (PSNR-trained models, bicubic),
    above 1 more (noise, ringing, hallucinated texture). It says how much detail
    there is, not whether it is the right detail: read it beside PSNR. Takes the
    planes ``scored_y`` gives.
    """
    return laplacian_energy(sr_y) / max(laplacian_energy(gt_y), 1e-12)


def evaluate_image(name: str, hr: np.ndarray, scale: int, method: Method, degrade: list | None = None) -> ImageScore:
    """Protocol score of one method on one HR image; ``degrade``: steps applied to the protocol's LR first."""
    hr, lr = prepare(hr, scale)
    if degrade:
        from .degrade import degrade_lr

        lr = degrade_lr(lr, degrade, name)
    start = time.perf_counter()
    sr = method(lr, scale)
    seconds = time.perf_counter() - start
    gt_y, sr_y = scored_y(hr, scale), scored_y(sr, scale)  # once for PSNR, SSIM and the texture measure
    return ImageScore(name, P.psnr(gt_y, sr_y), P.ssim(gt_y, sr_y), seconds, hf_ratio(gt_y, sr_y))


def mean_scores(scores: list[ImageScore]) -> dict[str, float]:
    """Dataset score: mean of per-image scores, as the authors average."""
    return {
        "psnr": float(np.mean([s.psnr for s in scores])),
        "ssim": float(np.mean([s.ssim for s in scores])),
        "seconds": float(np.mean([s.seconds for s in scores])),
        "hf": float(np.mean([s.hf for s in scores])),
        "images": len(scores),
    }


def as_dict(scores: list[ImageScore]) -> list[dict]:
    """Per-image scores for JSON."""
    return [asdict(s) for s in scores]


def image_files(folder: Path) -> list[Path]:
    """Sorted image files of a test folder."""
    from .io import IMAGE_SUFFIXES

    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class Row:
    """One (dataset, scale, method) line of the table."""

    dataset: str
    scale: int
    method: str
    scores: list[ImageScore]
    degrade: str = ""  # the LR's degradations after the protocol's downscale, as --degrade reads them

    @property
    def mean(self) -> dict[str, float]:
        """Dataset means."""
        return mean_scores(self.scores)


@dataclass
class Report:
    """All rows of one evaluation run."""

    rows: list[Row]

    def table(self, hf: bool = False) -> str:
        """Markdown summary table (see ``summary_table``)."""
        return summary_table(self.to_json()["rows"], hf=hf)

    def to_json(self) -> dict:
        """Means and per-image scores."""
        return {
            "rows": [
                {
                    "dataset": r.dataset,
                    "scale": r.scale,
                    "method": r.method,
                    "degrade": r.degrade,
                    **r.mean,
                    "per_image": as_dict(r.scores),
                }
                for r in self.rows
            ]
        }


def summary_table(rows: list[dict], html: bool = False, hf: bool = False) -> str:
    """Mean PSNR / SSIM as the papers lay them out: a row per (scale, method), a column per dataset.

    ``hf``: each cell adds the high-frequency energy ratio to the ground truth (``hf_ratio``).

    ``rows`` are dicts with dataset, scale, method, psnr and ssim: ``Report.to_json()["rows"]``
    or the rows of ``lapsrn evaluate --json`` files, so the CLI, the HTML report and
    scripts/results_table.py print the same table. The best PSNR of each (dataset, scale) is
    bold (markdown) or has class 'best' (HTML).
    """
    from html import escape

    rows = [{**r, "dataset": f"{r['dataset']} ({r['degrade']})"} if r.get("degrade") else r for r in rows]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    keys = sorted(dict.fromkeys((r["scale"], r["method"]) for r in rows), key=lambda k: (k[0], k[1] != "bicubic"))
    cell = {(r["scale"], r["method"], r["dataset"]): r for r in rows}
    best: dict[tuple[int, str], float] = {}
    for r in rows:
        best[(r["scale"], r["dataset"])] = max(best.get((r["scale"], r["dataset"]), -math.inf), r["psnr"])
    lines = []
    for scale, method in keys:
        texts = []
        for d in datasets:
            r = cell.get((scale, method, d))
            text = "" if r is None else f"{r['psnr']:.2f} / {r['ssim']:.4f}" + (f" / {r['hf']:.2f}" if hf else "")
            top = r is not None and r["psnr"] == best[(scale, d)]
            texts.append(
                (f"<td class='best'>{text}</td>" if top else f"<td>{text}</td>")
                if html
                else (f"**{text}**" if top else text)
            )
        if html:
            lines.append(f"<tr><th>{escape(method)}</th><td>x{scale}</td>{''.join(texts)}</tr>")
        else:
            lines.append(f"| {method} | x{scale} | " + " | ".join(texts) + " |")
    if html:
        head = "".join(f"<th>{escape(d)}</th>" for d in datasets)
        return f"<table id='summary'><tr><th>method</th><th>scale</th>{head}</tr>{''.join(lines)}</table>"
    header = ["| method | scale | " + " | ".join(datasets) + " |", "|---|---|" + "---|" * len(datasets)]
    return "\n".join(header + lines)


def run_evaluation(
    models: list[tuple[str, object]],
    folders: list[Path],
    scales: list[int],
    bicubic_row: bool = True,
    degrade: list | None = None,
) -> Report:
    """Score each (name, Upscaler) and bicubic on every folder and scale; a progress bar on long runs.

    ``degrade``: ``degrade.Step``s applied to every LR after the protocol's downscale (JPEG, noise, blur).
    """
    from tqdm import tqdm

    from .colour import bicubic, super_resolve
    from .degrade import describe
    from .io import image_size, read_image

    rows: list[Row] = []
    # weighed by pixels, so that the ETA holds when large and small images mix; shown after a second
    listed = [(folder, image_files(folder)) for folder in folders]
    sizes = {p: math.prod(image_size(p)) / 1e6 for _, files in listed for p in files}
    total = sum(sizes[p] for _, files in listed for p in files) * len(scales) * len(models)
    bar_format = "{desc}{percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} Mpx [{elapsed}<{remaining}]"
    with tqdm(total=total, desc="evaluating", delay=1.0, leave=False, bar_format=bar_format) as bar:
        for folder, files in listed:
            if not files:
                raise ValueError(f"{folder}: no images")
            hrs = [(p.stem, read_image(p).pixels) for p in files]
            for scale in scales:
                methods: list[tuple[str, Method]] = [("bicubic", bicubic)] if bicubic_row else []
                methods += [(name, lambda lr, s, up=up: super_resolve(up, lr, s)) for name, up in models]
                for name, fn in methods:
                    scores = []
                    for (stem, hr), path in zip(hrs, files):
                        scores.append(evaluate_image(stem, hr, scale, fn, degrade))
                        bar.update(sizes[path] if name != "bicubic" else 0)
                    rows.append(Row(folder.name, scale, name, scores, describe(degrade or [])))
    return Report(rows)
