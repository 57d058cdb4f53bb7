"""Scoring a model on folders of HR images with the papers' protocol (see ``protocol``)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable

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


def prepare(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR, LR) as test_LapSRN.m makes them: gray as 3 equal channels, mod-crop, float LR."""
    hr = P.modcrop(P.gray_to_rgb(hr), scale)
    return hr, P.imresize(hr, 1.0 / scale)


def score(hr: np.ndarray, sr: np.ndarray, scale: int) -> tuple[float, float]:
    """evaluate_SR.m: quantise to uint8, Y of BT.601, shave `scale` pixels, PSNR and SSIM."""
    gt_y = P.rgb2ycbcr(P.im2uint8(hr) / 255.0)[..., 0]
    sr_y = P.rgb2ycbcr(P.im2uint8(sr) / 255.0)[..., 0]
    gt_y, sr_y = P.shave(gt_y, scale), P.shave(sr_y, scale)
    return P.psnr(gt_y, sr_y), P.ssim(gt_y, sr_y)


def evaluate_image(name: str, hr: np.ndarray, scale: int, method: Method) -> ImageScore:
    """Protocol score of one method on one HR image."""
    hr, lr = prepare(hr, scale)
    start = time.perf_counter()
    sr = method(lr, scale)
    seconds = time.perf_counter() - start
    return ImageScore(name, *score(hr, sr, scale), seconds)


def mean_scores(scores: list[ImageScore]) -> dict[str, float]:
    """Dataset score: mean of per-image scores, as the authors average."""
    return {
        "psnr": float(np.mean([s.psnr for s in scores])),
        "ssim": float(np.mean([s.ssim for s in scores])),
        "seconds": float(np.mean([s.seconds for s in scores])),
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

    @property
    def mean(self) -> dict[str, float]:
        """Dataset means."""
        return mean_scores(self.scores)


@dataclass
class Report:
    """All rows of one evaluation run."""

    rows: list[Row]

    def table(self) -> str:
        """Markdown table: PSNR / SSIM and seconds per image."""
        lines = ["| dataset | scale | method | PSNR (dB) | SSIM | s/image |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            m = r.mean
            lines.append(f"| {r.dataset} | x{r.scale} | {r.method} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['seconds']:.3f} |")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """Means and per-image scores."""
        return {"rows": [{"dataset": r.dataset, "scale": r.scale, "method": r.method, **r.mean, "per_image": as_dict(r.scores)} for r in self.rows]}


def run_evaluation(models: list[tuple[str, object]], folders: list[Path], scales: list[int], bicubic_row: bool = True) -> Report:
    """Score each (name, Upscaler) and bicubic on every folder and scale; a progress bar on long runs."""
    from tqdm import tqdm

    from .imaging import bicubic, super_resolve
    from .io import read_image

    rows: list[Row] = []
    total = sum(len(image_files(f)) for f in folders) * len(scales) * len(models)
    with tqdm(total=total, unit="img", disable=total < 20, leave=False) as bar:
        for folder in folders:
            files = image_files(folder)
            if not files:
                raise ValueError(f"{folder}: no images")
            hrs = [(p.stem, read_image(p).pixels) for p in files]
            for scale in scales:
                methods: list[tuple[str, Method]] = [("bicubic", bicubic)] if bicubic_row else []
                methods += [(name, lambda lr, s, up=up: super_resolve(up, lr, s)) for name, up in models]
                for name, fn in methods:
                    scores = []
                    for stem, hr in hrs:
                        scores.append(evaluate_image(stem, hr, scale, fn))
                        bar.update(name != "bicubic")
                    rows.append(Row(folder.name, scale, name, scores))
    return Report(rows)
