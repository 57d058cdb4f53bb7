"""Training data: HR folders decoded once to Y, random patches, LR and level targets by MATLAB bicubic.

The batch of step k is a pure function of (seed, k): a run that resumes at
step k sees the same patches as one that never stopped, every DDP rank can
draw the same global batch and keep its own slice, and DataLoader workers
can prepare future steps in parallel without changing a single patch.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import protocol as P
from .config import scale_shares
from .degrade import Recipe, degrade_patch


def load_y_images(folders: list[Path], min_side: int) -> list[np.ndarray]:
    """Every image of the folders as float32 BT.601 Y in [0, 1], decoded once."""
    from .io import IMAGE_SUFFIXES, read_image

    images = []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            img = read_image(path).pixels
            y = P.rgb2ycbcr(P.gray_to_rgb(img))[..., 0]
            if min(y.shape) >= min_side:
                images.append(y.astype(np.float32))
    if not images:
        raise ValueError(f"no training images of at least {min_side} px in {', '.join(map(str, folders))}")
    return images


def random_patch(img: np.ndarray, patch: int, rng: np.random.Generator, min_ratio: float = 0.5) -> np.ndarray:
    """One augmented HR patch: random downscale in [min_ratio, 1], crop, rot90 k, h-flip p=0.5.

    Only the crop's neighbourhood is resized, with a margin that covers the
    kernel, so the cost does not grow with the image size. The sampling grid is
    anchored at that region rather than at the image corner: a sub-pixel shift
    of the same augmentation, equal in distribution to resizing the whole image.
    """
    h, w = img.shape
    ratio = rng.uniform(min_ratio, 1.0)
    ratio = max(ratio, (patch + 1) / min(h, w))  # the resized image must still hold a patch
    if ratio < 1.0:
        margin = int(np.ceil(4 / ratio)) + 2
        src = int(np.ceil(patch / ratio)) + 2 * margin
        top = rng.integers(0, max(h - src, 0) + 1)
        left = rng.integers(0, max(w - src, 0) + 1)
        region = img[top : top + src, left : left + src]
        small = P.imresize(region, ratio)
        oy, ox = (small.shape[0] - patch) // 2, (small.shape[1] - patch) // 2  # centre: away from the margin
        crop = small[oy : oy + patch, ox : ox + patch]
    else:
        top, left = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
        crop = img[top : top + patch, left : left + patch]
    crop = np.rot90(crop, k=int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop, dtype=np.float32)


def downscale(batch: torch.Tensor, factor: int) -> torch.Tensor:
    """MATLAB bicubic downscale of a (N, 1, H, W) batch by an integer factor, as two matmuls."""
    h, w = batch.shape[-2:]
    rows = torch.from_numpy(P.resize_matrix(h, h // factor, 1.0 / factor).toarray()).to(batch)
    cols = torch.from_numpy(P.resize_matrix(w, w // factor, 1.0 / factor).toarray()).to(batch)
    return rows @ batch @ cols.T


@dataclass
class PyramidBatch:
    """LR input and the ground truth of every level for one scale's share of a batch."""

    lr: torch.Tensor
    targets: list[torch.Tensor]  # x2, x4, ... ending with the HR patch


def make_pyramid(hr: torch.Tensor, levels: int) -> PyramidBatch:
    """LR = HR / 2^L and level-l target = HR / 2^(L - l), all MATLAB bicubic (getBatch_MSLapSRN.m)."""
    targets = [downscale(hr, 2 ** (levels - l)) for l in range(1, levels)] + [hr]
    return PyramidBatch(downscale(hr, 2**levels), targets)


class PatchSampler(torch.utils.data.Dataset):
    """Global batches of HR patches split over scales; item k is the batch of step k.

    With a degradation ``recipe`` each patch also gets its degraded LR
    (``degrade.degrade_patch``), drawn from its own stream of (seed, step), so
    the HR patches are those of the same run without degradations.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        patch: int,
        scales: list[int],
        seed: int,
        size: int,
        recipe: Recipe | None = None,
    ) -> None:
        self.images, self.patch, self.scales, self.seed, self.size = images, patch, scales, seed, size
        self.recipe = recipe

    def __len__(self) -> int:
        return 2**62  # indexed by step, never exhausted

    def __getitem__(self, step: int) -> list[tuple[int, torch.Tensor, torch.Tensor | None]]:
        """[(scale, HR patches, degraded LR or None)]: the batch split over the scales in ceil-sized shares
        (getBatch_MSLapSRN.m); None = the protocol's bicubic LR, made with the targets by ``make_pyramid``."""
        rng = np.random.default_rng([self.seed, step])
        patches = [random_patch(self.images[rng.integers(len(self.images))], self.patch, rng) for _ in range(self.size)]
        hr = torch.from_numpy(np.stack(patches))[:, None]
        groups = list(zip(self.scales, hr.split(scale_shares(self.size, len(self.scales)))))
        if self.recipe is None:
            return [(scale, group, None) for scale, group in groups]
        rng = np.random.default_rng([self.seed, step, 1])
        return [(scale, group, self._degraded(group, scale, rng)) for scale, group in groups]

    def _degraded(self, hr: torch.Tensor, scale: int, rng: np.random.Generator) -> torch.Tensor:
        """The degraded LR of each (1, H, W) patch of ``hr``, as a float32 (N, 1, H/scale, W/scale) batch."""
        lrs = [degrade_patch(patch[0].numpy(), scale, self.recipe, rng) for patch in hr]  # type: ignore[arg-type]
        return torch.from_numpy(np.stack(lrs).astype(np.float32))[:, None]


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the training process, which checkpoints, then stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def batches(
    sampler: PatchSampler, first: int, last: int, workers: int, pin: bool = False
) -> torch.utils.data.DataLoader:
    """Batches of steps first..last-1 in order; workers > 0 prepare them in parallel processes."""
    return torch.utils.data.DataLoader(
        sampler,
        batch_size=None,
        sampler=range(first, last),
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
        worker_init_fn=_ignore_stop_signals,
    )
