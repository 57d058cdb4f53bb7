"""Losses with deep supervision: one term per pyramid level, summed.

Charbonnier here is rho(x) = sqrt(x^2 + eps^2) with eps = 1e-3, as in both
papers -- not kornia's (eps = 1) nor BasicSR's (eps = 1e-12). Each level's
term is reduced by ``reduction``: ``"mean"`` (default; per-pixel average, so
the learning rate does not depend on the patch size) or ``"sum"``: summed
over pixels and averaged over the batch, which is what the official
MatConvNet code optimises (``avg_loss_by_size = 0``, and its solver divides
the summed gradient by the batch size).
"""

from __future__ import annotations

import torch

from .config import Loss, Reduction


def _reduce(per_pixel: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """Mean over everything, or sum over pixels and mean over the batch (dim 0)."""
    return per_pixel.mean() if reduction == "mean" else per_pixel.sum() / per_pixel.shape[0]


def charbonnier(
    pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Robust L1: sqrt((pred - target)^2 + eps^2)."""
    return _reduce(torch.sqrt((pred - target) ** 2 + eps * eps), reduction)


def l2(pred: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Squared error: the papers' ablation baseline."""
    return _reduce((pred - target) ** 2, reduction)


def pyramid_loss(
    preds: list[torch.Tensor], targets: list[torch.Tensor], kind: Loss = "charbonnier", reduction: Reduction = "mean"
) -> torch.Tensor:
    """Sum over levels of the per-level loss against the ground truth at that level's size."""
    fn = charbonnier if kind == "charbonnier" else l2
    return sum((fn(p, t, reduction=reduction) for p, t in zip(preds, targets, strict=True)), torch.zeros(()))
