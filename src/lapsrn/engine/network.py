"""LapSRN and MS-LapSRN forward passes on one LR luminance plane, from a dict of NumPy weights.

The same computation as ``models.py`` (the reference), organised for a CPU:
every 3x3 conv and feature upsampler runs by Winograd (``winograd.py``) with
its activation, pre-activation and skip fused in; feature maps chain through
reused buffers; the last level's upsampled features are made band by band and
added straight into the output image. Small images take the same steps in
NumPy alone (``small.py``), which starts at once. Weights use the reference's state-dict
names and layouts, so one file serves both.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import small, winograd
from .winograd import (
    Conv,
    FeatureMap,
    Upsampler,
    release_spares,
    set_threads,  # noqa: F401 (re-exported)
    single_threaded_blas,
)

SLOPE = 0.2  # LeakyReLU negative slope of both papers
BAND_BYTES = 32 << 20  # one band of the last level's upsampled features
SMALL_PIXELS = 1 << 15  # up to this many pixels in the largest map, NumPy alone beats Numba's start-up
_small_left = 2 * SMALL_PIXELS  # map pixels the small path may still take before Numba's start-up pays off


@dataclass(frozen=True)
class Level:
    """What one pyramid level needs besides its feature embedding."""

    upsample: Upsampler  # the x2 feature upsampler
    residual: Conv  # 64 -> 1: the level's residual image
    image_kernel: np.ndarray  # (4, 4): the image branch's x2 transposed conv


def _conv(state: dict[str, np.ndarray], name: str) -> Conv:
    return Conv.from_weights(state[f"{name}.weight"], state.get(f"{name}.bias"))


def _level(state: dict[str, np.ndarray], upsampler: str, prefix: str = "") -> Level:
    up = Upsampler.from_weights(state[f"{upsampler}.deconv.weight"], state[f"{upsampler}.deconv.bias"])
    return Level(
        up, _conv(state, f"{prefix}residual"), state[f"{prefix}image_up.deconv.weight"][0, 0].astype(np.float32)
    )


class Network:
    """A pyramid network: input conv, then per level an embedding, the feature upsampler and both branches."""

    levels: int | None  # levels the weights provide; None: shared weights, any number
    input_post: float  # LeakyReLU after the input conv (1.0: none)
    upsample_post: float  # LeakyReLU after the feature upsampler (1.0: none)
    input_conv: Conv

    def level(self, i: int) -> Level:
        raise NotImplementedError

    def embed(self, i: int, x: FeatureMap, ops: ModuleType) -> FeatureMap:
        """The level's feature embedding of x; x and every other buffer but the result are recycled."""
        raise NotImplementedError

    def __call__(self, y: np.ndarray, levels: int, last_only: bool = False) -> list[np.ndarray]:
        """x2, x4, ... x2^levels of an (h, w) LR luminance plane in [0, 1] (or only the last), float32."""
        if self.levels is not None and not 1 <= levels <= self.levels:
            raise ValueError(f"this LapSRN has {self.levels} levels, asked for {levels}")
        image = np.ascontiguousarray(y, np.float32)
        ops = winograd if self._winograd(image.size * 4 ** (levels - 1)) else small
        # Winograd's bands each run on one pool thread with single-threaded BLAS (robust on a busy machine,
        # where spinning BLAS threads stall); the small path has no pool, so its products use BLAS's threads.
        blas = single_threaded_blas() if ops is winograd else nullcontext()
        try:
            with blas:
                return self._forward(image, levels, last_only, ops)
        finally:
            release_spares()
            if ops is small:
                small.release()

    @staticmethod
    def _winograd(pixels: int) -> bool:
        """Winograd, unless the image is small and, in this process, small images have not yet done enough
        work to pay for loading Numba (about a second): one small image starts fast, a folder of them
        switches to the faster path after a few."""
        global _small_left
        if pixels > SMALL_PIXELS or pixels > _small_left:
            return True
        _small_left -= pixels
        return False

    def _forward(self, image: np.ndarray, levels: int, last_only: bool, ops: ModuleType) -> list[np.ndarray]:
        lr = FeatureMap.from_array(image)
        features = ops.conv3x3(lr, self.input_conv, post=self.input_post)
        lr.recycle()
        outputs = []
        for i in range(levels):
            level, last = self.level(i), i == levels - 1
            release_spares(keep=64 << 20)  # the previous level's buffers, of other shapes, unless they are few
            embedded = self.embed(i, features, ops)  # recycles the features' buffers it no longer needs
            image = ops.image_upsample(image, level.image_kernel)
            if last:  # nothing reads the last level's features but its residual conv
                ops.add_upsample_residual(
                    embedded, level.upsample, self.upsample_post, level.residual, image, BAND_BYTES
                )
            else:
                features = ops.upsample2x(embedded, level.upsample, self.upsample_post)
                residual = ops.conv3x3(features, level.residual)
                image += residual.inside[..., 0]
                residual.recycle()
            embedded.recycle()
            if last or not last_only:
                outputs.append(image)
        return outputs


class LapSRNEngine(Network):
    """LapSRN: per level D x (conv, LeakyReLU), then the upsampler and a LeakyReLU; separate weights per level."""

    input_post = upsample_post = SLOPE

    def __init__(self, state: dict[str, np.ndarray], levels: int, depth: int) -> None:
        self.levels = levels
        self.input_conv = _conv(state, "input_conv")
        self.convs = [[_conv(state, f"pyramid.{i}.features.{2 * d}") for d in range(depth)] for i in range(levels)]
        self.branches = [_level(state, f"pyramid.{i}.features.{2 * depth}", f"pyramid.{i}.") for i in range(levels)]

    def level(self, i: int) -> Level:
        return self.branches[i]

    def embed(self, i: int, x: FeatureMap, ops: ModuleType) -> FeatureMap:
        spare = None
        for conv in self.convs[i]:  # two buffers, swapped after each layer
            x, spare = ops.conv3x3(x, conv, post=SLOPE, out=spare), x
        spare.recycle()
        return x


class MSLapSRNEngine(Network):
    """MS-LapSRN: one shared block of D pre-activation convs applied R times per level, with a local skip."""

    input_post = upsample_post = 1.0
    levels = None

    def __init__(self, state: dict[str, np.ndarray], depth: int, recursions: int, skip: str) -> None:
        self.recursions, self.skip = recursions, skip
        self.input_conv = _conv(state, "input_conv")
        self.block = [_conv(state, f"block.body.{2 * d + 1}") for d in range(depth)]
        self.shared = _level(state, "upsample")

    def level(self, i: int) -> Level:
        return self.shared

    def embed(self, i: int, source: FeatureMap, ops: ModuleType) -> FeatureMap:
        """R recursions of the block (LeakyReLU, conv) x D with the skip fused, and the final LeakyReLU."""
        if self.recursions == 0:
            np.maximum(source.data, SLOPE * source.data, out=source.data)
            return source
        x, free = source, []  # free: buffers no longer read, reused as outputs
        for r in range(self.recursions):
            skip = {"SS": source, "DS": x, "NS": None}[self.skip]
            for i, conv in enumerate(self.block):
                last = i == len(self.block) - 1
                post = SLOPE if last and r == self.recursions - 1 else 1.0
                y = ops.conv3x3(
                    x, conv, pre=SLOPE, post=post, skip=skip if last else None, out=free.pop() if free else None
                )
                if x is not source and x is not skip:
                    free.append(x)
                x = y
            if skip is not None and skip is not source:
                free.append(skip)
        for spare in (source, *free):
            spare.recycle()
        return x


def build(
    arch: str, state: dict[str, np.ndarray], depth: int, levels: int = 3, recursions: int = 1, skip: str = "SS"
) -> Network:
    """The engine network for a model description and its weights (reference names and layouts)."""
    if arch == "LapSRN":
        return LapSRNEngine(state, levels, depth)
    if arch == "MSLapSRN":
        return MSLapSRNEngine(state, depth, recursions, skip)
    raise ValueError(f"unknown architecture {arch!r}")
