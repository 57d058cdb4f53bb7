"""Training configuration: one typed dataclass and the presets, with no heavy imports.

Kept apart from ``training`` so that ``lapsrn --help`` and the CLI's flag
definitions do not import torch. Each field carries its help text in its
metadata and every string choice is a ``Literal``: the CLI builds its flags,
help and ``choices`` from them, and ``TrainConfig.__post_init__`` checks the
same types and choices for values from JSON files and Python alike.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from .degrade import Recipe

Arch = Literal["MSLapSRN", "LapSRN", "OneStep"]
Skip = Literal["NS", "DS", "SS"]
Sharing = Literal["separate", "shared"]
Reconstruction = Literal["residual", "direct"]
Optimizer = Literal["sgd", "adam"]
Schedule = Literal["step", "cosine"]
Loss = Literal["charbonnier", "l2"]
Reduction = Literal["mean", "sum"]
InitScheme = Literal["kaiming", "paper"]
Device = Literal["auto", "cpu", "cuda"]
Preset = Literal["fast", "paper"]
DEFAULT_PRESET: Preset = "fast"


def shared_folder() -> Path:
    """The papers' data: $LAPSRN_SHARED when set, else ``shared/`` beside a clone of this repository."""
    env = os.environ.get("LAPSRN_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared"


DATA = shared_folder() / "datasets"


def doc(help: str, minimum: float | None = None) -> dict[str, Any]:
    """A field's metadata: its help text for the CLI and the lowest value it accepts."""
    return {"help": help, "minimum": minimum}


class ConfigError(ValueError):
    """A TrainConfig value that is not allowed: one line naming the field and what it accepts."""


@dataclass
class TrainConfig:
    """Everything that defines a training run."""

    arch: Arch = field(
        default="MSLapSRN",
        metadata=doc("network: MS-LapSRN (one shared block, recursive), LapSRN, or the no-pyramid ablation OneStep"),
    )
    depth: int = field(default=5, metadata=doc("conv layers per block (D)", minimum=1))
    recursions: int = field(default=2, metadata=doc("recursions of the shared block (R, MS-LapSRN only)", minimum=1))
    skip: Skip = field(default="SS", metadata=doc("MS-LapSRN skip connections: none, distinct-source or shared-source"))
    sharing: Sharing = field(
        default="separate", metadata=doc("LapSRN levels: their own weights (paper) or one set shared (ablation)")
    )
    reconstruction: Reconstruction = field(
        default="residual",
        metadata=doc("LapSRN levels: a residual added to the upsampled image (paper) or the HR image (ablation)"),
    )
    scales: list[int] = field(
        default_factory=lambda: [2, 4, 8],
        metadata=doc("upscaling factors trained, powers of two; the batch is split over them"),
    )
    train_dirs: list[str] = field(
        default_factory=lambda: [str(DATA / "train/T91"), str(DATA / "train/BSDS200")],
        metadata=doc("folders of HR training images ($LAPSRN_SHARED/datasets/... when set)"),
    )
    val_dirs: list[str] = field(
        default_factory=lambda: [str(DATA / "test/Set5"), str(DATA / "test/Set14")],
        metadata=doc("folders scored at every checkpoint; none (or --no-val) skips validation"),
    )
    val_scale: int = field(default=4, metadata=doc("scale of the validation PSNR", minimum=2))
    patch: int = field(default=128, metadata=doc("HR patch side in pixels, a multiple of the largest scale", minimum=2))
    batch: int = field(default=64, metadata=doc("patches per step over all scales and ranks", minimum=1))
    steps: int = field(
        default=100_000, metadata=doc("last training step (raise it with --resume to train on)", minimum=1)
    )
    optimizer: Optimizer = field(default="sgd", metadata=doc("SGD with momentum (paper) or Adam"))
    lr: float = field(default=1e-5, metadata=doc("peak learning rate", minimum=0))
    lr_min: float = field(default=1e-6, metadata=doc("learning rate floor", minimum=0))
    momentum: float = field(default=0.9, metadata=doc("SGD momentum", minimum=0))
    weight_decay: float = field(default=1e-4, metadata=doc("L2 weight decay", minimum=0))
    schedule: Schedule = field(
        default="step", metadata=doc("halve the lr every lr_step steps, or cosine to lr_min at the last step")
    )
    lr_step: int = field(default=50_000, metadata=doc("steps between halvings of the step schedule", minimum=1))
    warmup: int = field(default=0, metadata=doc("steps of linear learning-rate warm-up", minimum=0))
    clip_grad: float = field(default=0.0, metadata=doc("max global gradient norm, 0 = off", minimum=0))
    loss: Loss = field(default="charbonnier", metadata=doc("per-level loss: Charbonnier (papers) or L2"))
    reduction: Reduction = field(
        default="mean", metadata=doc("per-level mean over pixels, or sum over pixels (official code)")
    )
    seed: int = field(default=0, metadata=doc("seed of the initial weights and of every batch", minimum=0))
    val_every: int = field(
        default=1000, metadata=doc("steps between checkpoints (and validation, log rows)", minimum=1)
    )
    out: str = field(
        default="runs/lapsrn", metadata=doc("run folder: config.json, log.csv, checkpoint.pt, model.safetensors")
    )
    init: str = field(
        default="", metadata=doc("safetensors of ours to start from, e.g. a previous stage ('' = fresh weights)")
    )
    init_scheme: InitScheme = field(
        default="kaiming", metadata=doc("fresh weights: He (LeakyReLU gain) or the authors' Gaussians")
    )
    adversarial: float = field(
        default=0.0,
        metadata=doc(
            "weight of the adversarial term (the papers' GAN variant; a DCGAN discriminator); 0 = off", minimum=0
        ),
    )
    d_lr: float = field(default=1e-4, metadata=doc("discriminator learning rate (Adam, betas 0.5, 0.999)", minimum=0))
    degrade_clean: float = field(
        default=1.0,
        metadata=doc("share of patches with the protocol's clean LR; below 1 the rest are degraded", minimum=0),
    )
    degrade_blur: float = field(default=0.5, metadata=doc("largest Gaussian blur sigma, in LR pixels", minimum=0))
    degrade_noise: float = field(default=10.0, metadata=doc("largest noise sigma, in 8-bit levels", minimum=0))
    degrade_jpeg: list[int] = field(
        default_factory=lambda: [30, 95], metadata=doc("JPEG quality range of degraded patches; 0 0 = no JPEG")
    )
    device: Device = field(default="auto", metadata=doc("auto = CUDA when present, else the CPU"))
    workers: int = field(
        default=0, metadata=doc("processes preparing batches ahead; 0 = in the training process", minimum=0)
    )

    def __post_init__(self) -> None:
        hints = get_type_hints(TrainConfig)
        for f in fields(self):
            _check_value(f, getattr(self, f.name), hints[f.name])
        if len(set(self.scales)) != len(self.scales) or any(s < 2 or s & (s - 1) for s in self.scales):
            raise ConfigError(f"scales must be distinct powers of two from 2, got {_show(self.scales)}")
        if self.patch % max(self.scales):
            raise ConfigError(f"patch {self.patch} must be a multiple of the largest scale {max(self.scales)}")
        if self.arch != "LapSRN" and (self.sharing, self.reconstruction) != ("separate", "residual"):
            raise ConfigError("sharing and reconstruction are LapSRN options: use them with --arch LapSRN")
        if (
            self.degrade_clean > 1
            or len(self.degrade_jpeg) != 2
            or not (self.degrade_jpeg == [0, 0] or 1 <= self.degrade_jpeg[0] <= self.degrade_jpeg[1] <= 100)
        ):
            raise ConfigError(
                f"degrade_clean must be at most 1 and degrade_jpeg two qualities LOW HIGH in 1..100 (or 0 0), "
                f"got {self.degrade_clean} and {_show(self.degrade_jpeg)}"
            )
        if not self.train_dirs:
            raise ConfigError("train_dirs: give at least one folder of training images")
        check_batch(self.batch, self.scales, ranks=1)

    def recipe(self) -> Recipe | None:
        """The degradations of training inputs, or None for the protocol's clean LR only."""
        from .degrade import Recipe

        if self.degrade_clean >= 1:
            return None
        return Recipe(self.degrade_clean, self.degrade_blur, self.degrade_noise, tuple(self.degrade_jpeg))  # type: ignore[arg-type]


def _show(value: Any) -> str:
    """A config value as a user types it on the command line."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _check_value(f: Field, value: Any, hint: Any) -> None:
    """One field's type, choice and lowest value, with a one-line error naming the field."""
    if get_origin(hint) is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{f.name}: unknown value {value!r} (choose from {', '.join(get_args(hint))})")
        return
    if get_origin(hint) is list:
        elem = get_args(hint)[0]
        if not isinstance(value, list) or not all(isinstance(v, elem) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{f.name}: expected a list of {elem.__name__}, got {value!r}")
        return
    allowed = (int, float) if hint is float else hint
    if not isinstance(value, allowed) or isinstance(value, bool):
        raise ConfigError(f"{f.name}: expected {hint.__name__}, got {value!r}")
    low = f.metadata.get("minimum")
    if low is not None and not (math.isfinite(value) and value >= low):
        raise ConfigError(f"{f.name}: must be at least {low}, got {value}")


def scale_shares(batch: int, n_scales: int) -> list[int]:
    """Patches of each scale in a batch: ceil-sized shares in order, as getBatch_MSLapSRN.m splits it."""
    share = -(-batch // n_scales)
    return [max(0, min(share, batch - i * share)) for i in range(n_scales)]


def check_batch(batch: int, scales: list[int], ranks: int) -> None:
    """Every scale gets patches and every rank the same number of them, or a message saying what to change."""
    shares = scale_shares(batch, len(scales))
    if min(shares) > 0 and all(s % ranks == 0 for s in shares):
        return
    step = len(scales) * ranks
    below, above = batch // step * step, (batch // step + 1) * step
    fix = f"use a multiple of {step}, e.g. --batch " + (f"{below} or {above}" if below else f"{above}")
    split = f"batch {batch} splits over the scales {_show(scales)} as {'+'.join(map(str, shares))} patches"
    if min(shares) == 0:
        raise ConfigError(f"{split}, leaving a scale without any: {fix}")
    raise ConfigError(f"{split}, which {ranks} ranks cannot share evenly: {fix}")


PRESETS: dict[Preset, dict[str, Any]] = {
    # Ours for a CPU budget: Adam, warm-up then cosine, small patches, mean loss.
    "fast": {
        "optimizer": "adam",
        "lr": 5e-4,
        "lr_min": 1e-5,
        "schedule": "cosine",
        "weight_decay": 0.0,
        "warmup": 200,
        "steps": 20_000,
        "batch": 48,
        "patch": 64,
        "reduction": "mean",
        "clip_grad": 1.0,
        "val_every": 500,
    },
    # The official MatConvNet recipe: SGD, lr 1e-5 halved every 50 epochs of 1000 iterations.
    "paper": {
        "optimizer": "sgd",
        "lr": 1e-5,
        "lr_min": 1e-6,
        "schedule": "step",
        "lr_step": 50_000,
        "steps": 1_000_000,
        "batch": 64,
        "patch": 128,
        "reduction": "sum",
        "clip_grad": 0.0,
        "init_scheme": "paper",
    },
}


def field_default(f: Field) -> Any:
    """A field's default value, from its default or its default factory."""
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def field_help(f: Field) -> str:
    """A field's help text with its default under each preset (the CLI's --help)."""
    base = field_default(f)
    by_preset = {p: _show(PRESETS[p].get(f.name, base)) for p in PRESETS}
    if len(set(by_preset.values())) == 1:
        return f"{f.metadata['help']} (default: {by_preset[DEFAULT_PRESET]})"
    return f"{f.metadata['help']} (default: " + ", ".join(f"{v} with --preset {p}" for p, v in by_preset.items()) + ")"


def read_config_file(file: str | Path) -> dict[str, Any]:
    """The fields of a JSON config file, or a one-line error naming the file."""
    try:
        values = json.loads(Path(file).read_text())
    except OSError as e:
        raise ConfigError(f"{file}: cannot read config file ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{file}: expected a JSON object of TrainConfig fields")
    return values


def make_config(preset: str | None = None, file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Preset, then JSON file, then explicit overrides (None means 'not given'); checked before any work."""
    values: dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
        values.update(PRESETS[preset])  # type: ignore[index]
    if file:
        values.update(read_config_file(file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    return TrainConfig(**values)


# Fields a resumed run may change: they do not change the weights it reaches (``steps`` extends or
# shortens the run; with the cosine schedule the remaining steps follow the new length).
MAY_CHANGE_ON_RESUME = ("steps", "val_every", "workers", "device", "init", "out")


def resume_mismatches(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Fields of ``cfg`` that differ from a checkpoint's config and change the result: 'name NEW (checkpoint OLD)'."""
    given = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    saved = {
        **{f.name: field_default(f) for f in fields(cfg)},
        **saved,
    }  # a field newer than the checkpoint had its default
    return [
        f"{k} {_show(v)} (checkpoint {_show(saved[k])})"
        for k, v in given.items()
        if k not in MAY_CHANGE_ON_RESUME and saved[k] != v
    ]
