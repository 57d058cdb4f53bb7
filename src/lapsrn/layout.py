"""The reference models' state-dict names, in one place: models.py makes them, every other reader asks here.

``models.py`` names its tensors by its attributes (``pyramid.0.features.2.weight``); the weights
files keep those names, and the engine, the shape check and the converter from the authors' .mat
files find each tensor through these functions, so a change to the models' layout is made once and
is caught by the test that compares ``ModelSpec.shapes`` with a fresh model's state dict.
"""

from __future__ import annotations

INPUT_CONV = "input_conv"  # 1 -> 64, at the LR size
MSLAPSRN_UPSAMPLER = "upsample"  # MS-LapSRN's shared feature upsampler


def lapsrn_level(level: int) -> str:
    """The prefix of LapSRN level ``level``'s residual and image branch (0 is the x2 level)."""
    return f"pyramid.{level}."


def lapsrn_conv(level: int, d: int) -> str:
    """LapSRN level ``level``'s ``d``-th embedding conv (the Sequential interleaves LeakyReLUs)."""
    return f"pyramid.{level}.features.{2 * d}"


def lapsrn_upsampler(level: int, depth: int) -> str:
    """LapSRN level ``level``'s feature upsampler, after its ``depth`` convs."""
    return f"pyramid.{level}.features.{2 * depth}"


def mslapsrn_conv(d: int) -> str:
    """MS-LapSRN's shared block's ``d``-th conv (each after its pre-activation)."""
    return f"block.body.{2 * d + 1}"


def residual(prefix: str = "") -> str:
    """A level's residual conv (64 -> 1); MS-LapSRN's has no prefix."""
    return f"{prefix}residual"


def image_upsampler(prefix: str = "") -> str:
    """A level's image branch, the x2 transposed conv of the image; MS-LapSRN's has no prefix."""
    return f"{prefix}image_up"


def onestep_conv(d: int) -> str:
    """The one-step ablation's ``d``-th conv, all at the LR size."""
    return f"features.{2 * d}"


def onestep_upsampler(convs: int, u: int) -> str:
    """The one-step ablation's ``u``-th feature upsampler, after its ``convs`` convs."""
    return f"features.{2 * (convs + u)}"


def onestep_image_upsampler(u: int) -> str:
    """The one-step ablation's ``u``-th image upsampler."""
    return f"image_up.{u}"
