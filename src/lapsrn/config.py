"""Training configuration: one typed dataclass and the presets, with no heavy imports.

Kept apart from ``training`` so that ``lapsrn --help`` and the CLI's flag
definitions do not import torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

SHARED = Path("../shared/datasets")  # the papers' data, beside a clone of this repository


@dataclass
class TrainConfig:
    """Everything that defines a training run."""

    arch: str = "MSLapSRN"  # or "LapSRN"
    depth: int = 5
    recursions: int = 2
    skip: str = "SS"
    scales: list[int] = field(default_factory=lambda: [2, 4, 8])  # MS-LapSRN: any subset; LapSRN: one
    train_dirs: list[str] = field(default_factory=lambda: [str(SHARED / "train/T91"), str(SHARED / "train/BSDS200")])
    val_dirs: list[str] = field(default_factory=lambda: [str(SHARED / "test/Set5"), str(SHARED / "test/Set14")])
    val_scale: int = 4
    patch: int = 128
    batch: int = 64  # global batch: split over DDP ranks
    steps: int = 100_000
    optimizer: str = "sgd"  # "sgd" (paper) or "adam"
    lr: float = 1e-5
    lr_min: float = 1e-6
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"  # "step" (halve every lr_step) or "cosine"
    lr_step: int = 50_000
    warmup: int = 0
    clip_grad: float = 0.0  # max gradient norm, 0 = off
    loss: str = "charbonnier"  # or "l2"
    reduction: str = "mean"  # per-level "mean" over pixels or "sum" (official code)
    seed: int = 0
    val_every: int = 1000
    out: str = "runs/lapsrn"
    init: str = ""  # optional safetensors of ours to start from (e.g. a previous stage)
    init_scheme: str = "kaiming"  # "kaiming" (He, LeakyReLU gain, every conv) or "paper" (input conv sigma 1e-3)
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda"
    workers: int = 0  # processes preparing batches ahead; 0 = in the training process


PRESETS: dict[str, dict] = {
    # The official MatConvNet recipe: SGD, lr 1e-5 halved every 50 epochs of 1000 iterations.
    "paper": dict(optimizer="sgd", lr=1e-5, lr_min=1e-6, schedule="step", lr_step=50_000, steps=1_000_000,
                  batch=64, patch=128, reduction="sum", clip_grad=0.0, init_scheme="paper"),
    # Ours for a CPU budget: Adam, warm-up then cosine, small patches, mean loss.
    "fast": dict(optimizer="adam", lr=5e-4, lr_min=1e-5, schedule="cosine", weight_decay=0.0, warmup=200,
                 steps=20_000, batch=32, patch=64, reduction="mean", clip_grad=1.0, val_every=500),
}


def make_config(preset: str | None = None, file: str | None = None, **overrides) -> TrainConfig:
    """Preset, then JSON file, then explicit overrides (None means 'not given')."""
    values: dict = {}
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r} (choose {', '.join(PRESETS)})")
        values.update(PRESETS[preset])
    if file:
        values.update(json.loads(Path(file).read_text()))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
    return TrainConfig(**values)


