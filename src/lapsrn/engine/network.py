"""LapSRN and MS-LapSRN forward passes on one LR luminance plane, from a dict of NumPy weights.

The same computation as ``models.py`` (the reference), organised for a CPU:
every 3x3 conv and feature upsampler runs by Winograd (``winograd.py``) with
its activation, pre-activation and skip fused in; feature maps chain through
reused buffers. In MS-LapSRN nothing lies between the feature upsampler and the
residual conv, so the two compose into one 3x3 conv of the embedding with an
output per phase (``compose_residual``): the residual image never needs the
64-channel upsampled map. LapSRN's LeakyReLU between them forbids that, so its
last level's upsampled features are made band by band and added straight into
the output image. Weights use the reference's state-dict names and layouts, so one
file serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import layout as L
from ..bands import bands
from .winograd import (
    TAPS,
    Conv,
    FeatureMap,
    Upsampler,
    add_upsample_residual,
    conv3x3,
    image_upsample,
    release_spares,
    single_threaded_blas,
    upsample2x,
)

SLOPE = 0.2  # LeakyReLU negative slope of both papers
PROGRESS_UNIT = 1 << 10  # a level's weight in progress reports, times its 4^i
BAND_BYTES = 32 << 20  # one band of LapSRN's last upsampled features, made only for its residual conv
BAND_BYTES_PER_PIXEL = 3 * 64 * 4 + 64 + 48  # a band's maps per pixel: 3 of 64 float32 channels, the rows it
# reads from the previous level (a quarter as many), the residual's phases and two planes


@dataclass(frozen=True)
class Level:
    """What one pyramid level needs besides its feature embedding."""

    upsample: Upsampler  # the x2 feature upsampler
    residual: Conv  # 64 -> 1: the level's residual image
    image_kernel: np.ndarray  # (4, 4): the image branch's x2 transposed conv
    composed: ComposedResidual | None = None  # residual(upsample(.)) as one conv (``compose_residual``)


@dataclass(frozen=True)
class EdgeWeights:
    """The raw weights the composed residual's edge terms need, in float64."""

    up: np.ndarray  # (3, 3, C, C): the upsampler's taps as matrices, [row tap, col tap] -> (in, out)
    up_bias: np.ndarray  # (C,)
    residual: np.ndarray  # (C, 3, 3): the residual conv's one output

    def ring(self, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The upsampled map just outside its bottom row (p = 2h, q = -1 .. 2w) and right column
        (p = 0 .. 2h - 1, q = 2w), as the upsampler makes them from the zero-padded embedding: its
        bias plus the last embedding row (column) through its row (column) tap 2 (``TAPS``). Above and
        left the embedding row (column) it would read is padding: the bias alone."""
        h, w, c = inside.shape
        row = np.zeros((w + 2, c))  # row[n + 1]: the embedding's last row at column n, zero outside
        row[1 : w + 1] = inside[h - 1]
        col = np.zeros((h + 1, c))  # col[m + 1]: the last column at row m
        col[1:] = inside[:, w - 1]
        up, b = self.up, self.up_bias
        bottom = np.empty((2 * w + 2, c))
        bottom[1::2] = b + row[: w + 1] @ up[2, 2] + row[1:] @ up[2, 0]  # q = 2n: columns n - 1 and n
        bottom[0::2] = b + row[: w + 1] @ up[2, 1]  # q = 2n + 1: column n
        right = np.empty((2 * h, c))
        right[0::2] = b + col[:h] @ up[2, 2] + col[1:] @ up[0, 2]  # p = 2m: rows m - 1 and m
        right[1::2] = b + col[1:] @ up[1, 2]  # p = 2m + 1: row m
        return bottom, right


@dataclass(frozen=True)
class ComposedResidual:
    """The residual conv of the feature upsampler's output as one conv of the embedding, and what its
    edges need."""

    conv: Conv  # 4 outputs, one per output phase
    edges: EdgeWeights


def _phase_taps() -> np.ndarray:
    """(phase, offset + 1, residual tap, upsampler tap) -> 1 where output row 2m + phase of the residual conv
    reads the upsampled row 2m + phase + residual tap - 1, which that upsampler tap makes from embedding
    row m + offset (``TAPS``: upsampled row 2n reads rows n - 1, n with taps 2, 0; row 2n + 1 row n, tap 1)."""
    taps = np.zeros((2, 3, 3, 3))
    for phase in range(2):
        for t in range(3):
            row = phase + t - 1  # the upsampled row read, relative to 2m
            a, n = row % 2, row // 2
            for i, tap in enumerate(TAPS[a]):  # i = 0: embedding row n - 1, i = 1: row n
                if tap is not None:
                    taps[phase, n - 1 + i + 1, t, tap] = 1
    return taps


def compose_residual(
    up_w: np.ndarray, up_b: np.ndarray, res_w: np.ndarray, res_b: np.ndarray | None
) -> ComposedResidual:
    """The residual conv of the (linear) feature upsampler's output, as one 3x3 conv of the embedding.

    Output channel 2 a + b holds the residual's pixels (2m + a, 2n + b): the x2 upsampler followed by a
    3x3 conv is a stride-2 transposed conv whose four phases each read a 3x3 window of the embedding.
    It runs at the embedding's size with 4 outputs instead of making a 64-channel map four times larger
    (over a quarter of the network's time, docs/results/speed_candidates.md). The bias holds for pixels
    whose 3x3 window lies inside the upsampled map; ``Network._composed_residual`` mends the edges.
    Weights: ConvTranspose2d (Cin, C, 3, 3) and Conv2d (1, C, 3, 3), combined in float64.
    """
    p = _phase_taps()
    up, up_bias, res = (np.asarray(a, np.float64) for a in (up_w, up_b, res_w[0]))
    w = np.einsum(  # optimize: pairwise products, 0.11 s less at every start (docs/results/speed_candidates.md)
        "ydtk,xeul,mtu,cmkl->yxcde", p, p, res, up, optimize=True
    )
    bias = (0.0 if res_b is None else res_b[0]) + np.einsum("mtu,m->", res, up_bias)
    edges = EdgeWeights(up.transpose(2, 3, 0, 1), up_bias, res)
    return ComposedResidual(Conv.from_weights(w.reshape(4, up_w.shape[0], 3, 3), np.full(4, bias)), edges)


def _conv(state: dict[str, np.ndarray], name: str) -> Conv:
    return Conv.from_weights(state[f"{name}.weight"], state.get(f"{name}.bias"))


def _level(state: dict[str, np.ndarray], upsampler: str, prefix: str = "", linear: bool = False) -> Level:
    """A level's branches; ``linear``: no activation after the upsampler, so its residual conv is composed in."""
    up_w, up_b = state[f"{upsampler}.deconv.weight"], state[f"{upsampler}.deconv.bias"]
    res_w, res_b = state[f"{L.residual(prefix)}.weight"], state.get(f"{L.residual(prefix)}.bias")
    return Level(
        Upsampler.from_weights(up_w, up_b),
        _conv(state, L.residual(prefix)),
        state[f"{L.image_upsampler(prefix)}.deconv.weight"][0, 0].astype(np.float32),
        compose_residual(up_w, up_b, res_w, res_b) if linear else None,
    )


class Network:
    """A pyramid network: input conv, then per level an embedding, the feature upsampler and both branches."""

    levels: int | None  # levels the weights provide; None: shared weights, any number
    input_post: float  # LeakyReLU after the input conv (1.0: none)
    upsample_post: float  # LeakyReLU after the feature upsampler (1.0: none)
    input_conv: Conv
    embed_convs: int  # 3x3 convs in a level's embedding

    def level(self, i: int) -> Level:
        raise NotImplementedError

    def embed(self, i: int, x: FeatureMap) -> FeatureMap:
        """The level's feature embedding of x; x and every other buffer but the result are recycled."""
        raise NotImplementedError

    def __call__(
        self,
        y: np.ndarray,
        levels: int,
        last_only: bool = False,
        band_bytes: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[np.ndarray]:
        """x2, x4, ... x2^levels of an (h, w) LR luminance plane in [0, 1] (or only the last), float32.

        ``band_bytes``: run the last level in bands of rows whose feature maps take about this much
        (``band_rows``); None: whole. The levels before it always run whole. ``progress(done, total)``:
        the pass's work, after each level and each band of the last.
        """
        if self.levels is not None and not 1 <= levels <= self.levels:
            raise ValueError(f"this LapSRN has {self.levels} levels, asked for {levels}")
        image = np.ascontiguousarray(y, np.float32)
        rows = image.shape[0] << (levels - 1)  # of the last level's maps
        band = None if band_bytes is None else self.band_rows(band_bytes, image.shape[1] << (levels - 1))
        # Winograd's bands each run on one thread with single-threaded BLAS (robust on a busy machine,
        # where spinning BLAS threads stall).
        try:
            with single_threaded_blas():
                return self._forward(image, levels, last_only, band if band and band < rows else None, progress)
        finally:
            release_spares()

    @property
    def band_margin(self) -> int:
        """Rows of context either side of a band of the last level: one per conv of its embedding, one for
        the residual's read of the embedding."""
        return self.embed_convs + 1

    def band_rows(self, band_bytes: int, width: int) -> int:
        """Rows of the last level each band adds to the image, for maps of about ``band_bytes``; never fewer
        than twice the margin (or 8), so that a band computes at most twice what it keeps."""
        return max(band_bytes // (BAND_BYTES_PER_PIXEL * width) - 2 * self.band_margin, 2 * self.band_margin, 8)

    def _forward(
        self,
        image: np.ndarray,
        levels: int,
        last_only: bool,
        band: int | None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[np.ndarray]:
        """The pyramid; with ``band``, the last level in bands of that many rows (``_banded_level``).

        ``progress(done, total)``: the pass's work after each level and each band, a level weighing its
        pixels (four times the one before)."""
        weights = [4**i * PROGRESS_UNIT for i in range(levels)]
        total = sum(weights)
        source = FeatureMap.from_array(image)  # what the next level's features are made from, until they are
        features = None
        if not (band and levels == 1):
            features = conv3x3(source, self.input_conv, post=self.input_post)
            source.recycle()
        outputs = []
        for i in range(levels):
            level, last = self.level(i), i == levels - 1
            release_spares(keep=64 << 20)  # the previous level's buffers, of other shapes, unless they are few
            image = image_upsample(image, level.image_kernel)
            done = sum(weights[:i])
            if last and band:
                level_progress = (lambda r, rows: progress(done + weights[-1] * r // rows, total)) if progress else None
                self._banded_level(i, source, level, image, band, level_progress)
                source.recycle()
            else:
                embedded = self.embed(i, features)  # recycles the features' buffers it no longer needs
                whole_next = not last and not (band and i + 1 == levels - 1)
                features = self._branches(embedded, level, image, whole_next)
                if last or whole_next:
                    embedded.recycle()
                else:
                    source = embedded  # the banded last level makes its features from it, band by band
            if last or not last_only:
                outputs.append(image)
            if progress:
                progress(done + weights[i], total)
        return outputs

    def _branches(self, embedded: FeatureMap, level: Level, image: np.ndarray, features: bool) -> FeatureMap | None:
        """Adds the level's residual to ``image``; returns the upsampled features when ``features`` asks."""
        if level.composed is not None:
            image += self._composed_residual(embedded, level)
            return upsample2x(embedded, level.upsample, self.upsample_post) if features else None
        if not features:  # nothing else reads the upsampled features: made band by band, never whole
            add_upsample_residual(embedded, level.upsample, self.upsample_post, level.residual, image, BAND_BYTES)
            return None
        upsampled = upsample2x(embedded, level.upsample, self.upsample_post)
        residual = conv3x3(upsampled, level.residual)
        image += residual.inside[..., 0]
        residual.recycle()
        return upsampled

    def _banded_level(
        self,
        i: int,
        source: FeatureMap,
        level: Level,
        image: np.ndarray,
        band: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Level i (the last) in bands of ``band`` rows, each made with ``band_margin`` rows of context either
        side and cropped, so that no 64-channel map of the whole level exists and the result is the same.

        A band's features come from the rows of ``source`` they read (the LR image through the input
        conv, or the previous embedding through the upsampler), plus one row whose own context is cut
        off; the embedding's convs spoil one more row from each cut edge per layer, which the margin
        absorbs. Only the levels before the last run whole, and they are four times smaller.
        """
        rows, margin = source.h * (2 if i else 1), self.band_margin
        previous = None
        for r0, r1, *span in bands(rows, band, margin):
            if previous is not None and span[1] - span[0] != previous:
                release_spares(keep=0)  # the last band's buffers fit no other: not two bands' maps at once
            previous = span[1] - span[0]
            features, top = self._band_features(i, source, *span)
            embedded = self.embed(i, features)
            part = np.zeros((2 * embedded.h, 2 * embedded.w), np.float32)
            self._branches(embedded, level, part, features=False)
            embedded.recycle()
            image[2 * r0 : 2 * r1] += part[2 * (r0 - top) : 2 * (r1 - top)]
            if progress:
                progress(r1, rows)

    def _band_features(self, i: int, source: FeatureMap, a: int, b: int) -> tuple[FeatureMap, int]:
        """Level i's features for at least rows [a, b), exact there, and the level row they start at."""
        if i == 0:  # the input conv of LR rows a - 1 .. b
            p0, p1 = max(a - 1, 0), min(b + 1, source.h)
            part = FeatureMap.from_array(source.inside[p0:p1])
            features = conv3x3(part, self.input_conv, post=self.input_post)
        else:  # upsampled row 2n reads rows n - 1 and n of the previous embedding, row 2n + 1 row n
            p0, p1 = max(a // 2 - 1, 0), min(-(-b // 2), source.h)
            part = FeatureMap.from_array(source.inside[p0:p1])
            features = upsample2x(part, self.level(i - 1).upsample, self.upsample_post)
            p0 *= 2
        part.recycle()
        return features, p0

    @staticmethod
    def _composed_residual(embedded: FeatureMap, level: Level) -> np.ndarray:
        """The level's residual image by its composed conv, its outer rows and columns mended.

        At the image's edges the residual conv's zero padding lies outside the upsampled map, where the
        composed conv counts what the upsampler would make there: its bias, and below and right of the
        map the last embedding row or column through the upsampler's cropped taps (``EdgeWeights.ring``).
        Those terms are taken off the first and last rows and columns (``edge_terms``).
        """
        h, w = embedded.h, embedded.w
        phases = conv3x3(embedded, level.composed.conv)
        res = np.empty((2 * h, 2 * w), np.float32)
        res.reshape(h, 2, w, 2)[...] = phases.inside.reshape(h, w, 2, 2).transpose(0, 2, 1, 3)
        phases.recycle()
        top, bottom, left, right = edge_terms(embedded.inside, level.composed.edges)
        res[0] -= top
        res[-1] -= bottom
        res[1:-1, 0] -= left[1:-1]
        res[1:-1, -1] -= right[1:-1]
        return res


def _window_sums(terms: np.ndarray, n: int) -> np.ndarray:
    """out[i] = sum over taps k of terms[i + k, k]: a 3-tap window sliding over n positions."""
    return terms[0:n, 0] + terms[1 : n + 1, 1] + terms[2 : n + 2, 2]


def edge_terms(inside: np.ndarray, edges: EdgeWeights) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the composed residual counts beyond the upsampled map, at its first and last row (2w values
    each) and first and last column (2h each): the residual conv of a frame one pixel wide around the
    map, which holds the upsampler's values just outside it (``EdgeWeights.ring``), its inside zero."""
    h, w, c = inside.shape
    bottom_ring, right_ring = edges.ring(inside)
    frame_rows = np.zeros((2, 3, 2 * w + 2, c))  # the frame's three rows at the top, and at the bottom
    frame_rows[0, 0] = edges.up_bias
    frame_rows[0, 1:, 0] = edges.up_bias
    frame_rows[0, 1:, -1] = right_ring[:2]
    frame_rows[1, 2] = bottom_ring
    frame_rows[1, :2, 0] = edges.up_bias
    frame_rows[1, :2, -1] = right_ring[-2:]
    frame_cols = np.zeros((2, 2 * h + 2, 3, c))  # its three columns at the left, and at the right
    frame_cols[0, 0] = edges.up_bias
    frame_cols[0, 1:-1, 0] = edges.up_bias
    frame_cols[0, -1] = bottom_ring[:3]
    frame_cols[1, 0] = edges.up_bias
    frame_cols[1, 1:-1, 2] = right_ring
    frame_cols[1, -1] = bottom_ring[-3:]
    r = edges.residual  # (C, 3, 3): [channel, row tap t, column tap u]
    by_rows = sum(frame_rows[:, t] @ r[:, t, :] for t in range(3))  # [e, q, u]: column q through column tap u
    by_cols = sum(frame_cols[:, :, u] @ r[:, :, u] for u in range(3))  # [e, p, t]: row p through row tap t
    top, bottom = (_window_sums(terms, 2 * w) for terms in by_rows)
    left, right = (_window_sums(terms, 2 * h) for terms in by_cols)
    return top, bottom, left, right


class LapSRNEngine(Network):
    """LapSRN: per level D x (conv, LeakyReLU), then the upsampler and a LeakyReLU; separate weights per level."""

    input_post = upsample_post = SLOPE

    def __init__(self, state: dict[str, np.ndarray], levels: int, depth: int) -> None:
        self.levels, self.embed_convs = levels, depth
        self.input_conv = _conv(state, L.INPUT_CONV)
        self.convs = [[_conv(state, L.lapsrn_conv(i, d)) for d in range(depth)] for i in range(levels)]
        self.branches = [_level(state, L.lapsrn_upsampler(i, depth), L.lapsrn_level(i)) for i in range(levels)]

    def level(self, i: int) -> Level:
        return self.branches[i]

    def embed(self, i: int, x: FeatureMap) -> FeatureMap:
        spare = None
        for conv in self.convs[i]:  # two buffers, swapped after each layer
            x, spare = conv3x3(x, conv, post=SLOPE, out=spare), x
        spare.recycle()
        return x


class MSLapSRNEngine(Network):
    """MS-LapSRN: one shared block of D pre-activation convs applied R times per level, with a local skip."""

    input_post = upsample_post = 1.0
    levels = None

    def __init__(self, state: dict[str, np.ndarray], depth: int, recursions: int, skip: str) -> None:
        self.recursions, self.skip = recursions, skip
        self.embed_convs = depth * recursions
        self.input_conv = _conv(state, L.INPUT_CONV)
        self.block = [_conv(state, L.mslapsrn_conv(d)) for d in range(depth)]
        self.shared = _level(state, L.MSLAPSRN_UPSAMPLER, linear=True)

    def level(self, i: int) -> Level:
        return self.shared

    def embed(self, i: int, source: FeatureMap) -> FeatureMap:
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
                y = conv3x3(
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
