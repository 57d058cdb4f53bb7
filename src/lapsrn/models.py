"""LapSRN (CVPR 2017) and MS-LapSRN (TPAMI 2018), read against the papers' Figure 3.

Both take the LR luminance, shape (N, 1, h, w) in [0, 1], and return one image
per pyramid level: [x2, x4, x8, ...]. Each level has two branches:

* feature extraction: convolutions at the current resolution, then a
  transposed convolution (x2) whose output feeds the next level *and* one
  convolution that predicts this level's residual image;
* image reconstruction: the level's input image upsampled x2 by a 4x4
  transposed convolution initialised as bilinear, plus that residual.

Where the paper text and the authors' released code differ, we follow the
code, because the released weights only work that way: the feature
upsampler is a 3x3 transposed conv whose full output is cropped by one pixel
at the bottom/right (MatConvNet ``crop = [0 1 0 1]``); in LapSRN a LeakyReLU
follows it; in MS-LapSRN the residual conv reads the upsampled features
directly and each recursive block is pre-activation (LeakyReLU, then conv).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from . import winograd

Skip = Literal["NS", "DS", "SS"]
SLOPE = 0.2  # LeakyReLU negative slope used throughout both papers


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    """3x3 convolution that keeps the spatial size."""
    return nn.Conv2d(cin, cout, 3, padding=1)


def bilinear_kernel(size: int = 4) -> torch.Tensor:
    """Bilinear upsampling kernel for stride size // 2, as the authors initialise img_up."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    t = torch.arange(size, dtype=torch.float64)
    g = 1 - (t - center).abs() / factor
    return torch.outer(g, g).float()


TAPS = ((2, 0), (None, 1))  # output phase a -> kernel tap applied to input row m - 1, row m


def phase_weights(w: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
    """A 3x3 stride-2 transposed conv (Cin, Cout, 3, 3) as four small convs, one per output phase.

    Output row 2m + a of the transposed conv, cropped to 2h, sums input rows
    m - 1 and m with kernel taps 2 and 0 when a = 0, and row m with tap 1
    when a = 1 (the same for columns). So phase (a, b) is an ordinary
    convolution of the input, padded by one row/column at the top/left, with a
    2x2, 2x1, 1x2 or 1x1 kernel: the same nine taps, run by the fast direct
    convolution kernels (PyTorch's CPU transposed conv is several times slower
    per FLOP) and without computing the row and column that are cropped away.
    """
    out = {}
    for a in range(2):
        for b in range(2):
            rows = [k for k in TAPS[a] if k is not None]
            cols = [k for k in TAPS[b] if k is not None]
            out[a, b] = w[:, :, rows][:, :, :, cols].transpose(0, 1)  # (Cout, Cin, len(rows), len(cols))
    return out


def _format(x: torch.Tensor) -> torch.memory_format:
    """channels_last if x is laid out that way, else contiguous."""
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


class FeatureUpsample(nn.Module):
    """x2 transposed conv, 3x3, cropped to exactly 2h x 2w (MatConvNet crop [0 1 0 1]).

    Computed as four phase convolutions (``phase_weights``); ``reference``
    is the literal transposed conv it is tested against. At CPU inference the
    last level's upsampler runs by Winograd instead (``upsample_then_residual``).
    """

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():  # ONNX has a ConvTranspose op; the in-place phase writes do not trace
            return self.reference(x)
        n, c, h, w = x.shape
        out = torch.empty(n, c, 2 * h, 2 * w, dtype=x.dtype, device=x.device, memory_format=_format(x))
        phases = out.view(n, c, h, 2, w, 2)
        for (a, b), k in phase_weights(self.deconv.weight).items():
            # a 2-tap axis reads rows m - 1 and m: pad one on both sides and keep the first h outputs
            pad = (k.shape[2] - 1, k.shape[3] - 1)
            y = F.conv2d(x, k.contiguous(memory_format=_format(x)), self.deconv.bias, padding=pad)
            phases[:, :, :, a, :, b] = y[:, :, :h, :w]
        return out

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(x)[..., :-1, :-1]


class ImageUpsample(nn.Module):
    """x2 transposed conv, 4x4, no bias, bilinear at initialisation (image branch)."""

    def __init__(self) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1, bias=False)
        with torch.no_grad():
            self.deconv.weight.copy_(bilinear_kernel(4)[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(x)


CHUNK_BYTES = 32 << 20  # inference: size of one row chunk of the last level's upsampled features


def upsample_then_residual(upsample: nn.Module, residual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """residual(upsample(x)) for the last level at inference, in row chunks: the same numbers.

    The last level's upsampled 64-channel features are read by nothing but the
    residual conv, yet at full output size they are by far the largest tensor
    of the pass (x4: 16 floats x 64 per LR pixel). Computing them a band of rows
    at a time, with the rows of context the transposed conv (one input row
    above) and the 3x3 residual conv (one output row each side) need, keeps
    them small and in cache, so whole images fit in memory and run faster.
    At CPU inference both convs run by Winograd's algorithm (``winograd.upsample_then_residual``).
    """
    if winograd.usable(x):  # upsampler by Winograd F(4x4, 2x2), bands of tile rows
        deconv, post = (upsample[0], upsample[1].negative_slope) if isinstance(upsample, nn.Sequential) else (upsample, 1.0)
        return winograd.upsample_then_residual(x, deconv.deconv, post, residual, CHUNK_BYTES)
    n, c, h, w = x.shape
    rows = max(8, CHUNK_BYTES // (4 * w * c * x.element_size()))
    if rows >= h or torch.is_grad_enabled() or torch.onnx.is_in_onnx_export():
        return residual(upsample(x))
    out = torch.empty(n, 1, 2 * h, 2 * w, dtype=x.dtype, device=x.device)
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        a0, a1 = max(r0 - 1, 0), min(r1 + 1, h)  # input rows: one of context each side
        res = residual(upsample(x[:, :, a0:a1]))  # output rows 2 a0 .. 2 a1; row 2 a0 lacks context unless a0 = 0
        out[:, :, 2 * r0 : 2 * r1] = res[:, :, 2 * (r0 - a0) : 2 * (r1 - a0)]
    return out


class LapSRNLevel(nn.Module):
    """One LapSRN level: D x (conv, LeakyReLU), upsample, LeakyReLU; plus its residual and image branch."""

    def __init__(self, depth: int, channels: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):  # in-place activations: each overwrites a fresh conv output, saving a pass
            layers += [conv3x3(channels, channels), nn.LeakyReLU(SLOPE, inplace=True)]
        layers += [FeatureUpsample(channels), nn.LeakyReLU(SLOPE, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.residual = conv3x3(channels, 1)
        self.image_up = ImageUpsample()

    def forward(
        self, features: torch.Tensor, image: torch.Tensor, last: bool = False
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        features = self.extract(features)
        upsample = self.features[-2:]  # deconv, LReLU
        if last:  # nothing reads this level's features but its residual conv
            return None, self.image_up(image) + upsample_then_residual(upsample, self.residual, features)
        features = upsample(features)
        return features, self.image_up(image) + self.residual(features)

    def extract(self, features: torch.Tensor) -> torch.Tensor:
        """The D (conv, LeakyReLU) layers; at CPU inference by Winograd's algorithm, the same numbers faster."""
        convs = self.features[:-2]
        if not winograd.usable(features):
            return convs(features)
        x = winograd.FeatureMap.from_tensor(features)
        spare = None
        for conv in convs[::2]:  # two buffers, swapped after each layer
            x, spare = winograd.conv3x3(x, conv, post=SLOPE, out=spare), x
        del spare  # peak memory while copying x out
        return x.to_tensor()


class LapSRN(nn.Module):
    """LapSRN: separate weights per level; depth D convs per level (10 in the x2/x4 release, 5 in x8)."""

    def __init__(self, levels: int = 2, depth: int = 10, channels: int = 64) -> None:
        super().__init__()
        self.levels, self.depth = levels, depth
        self.input_conv = conv3x3(1, channels)
        self.pyramid = nn.ModuleList(LapSRNLevel(depth, channels) for _ in range(levels))

    def forward(self, lr: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
        n = self.levels if levels is None else levels
        if not 1 <= n <= self.levels:
            raise ValueError(f"this LapSRN has {self.levels} levels, asked for {n}")
        features = F.leaky_relu(self.input_conv(lr), SLOPE)
        image, outputs = lr, []
        for i, level in enumerate(self.pyramid[:n]):
            features, image = level(features, image, last=i == n - 1)
            outputs.append(image)
        return outputs


class RecursiveBlock(nn.Module):
    """D pre-activation convs (LeakyReLU, conv), no batch norm; reused R times per level."""

    def __init__(self, depth: int, channels: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):  # the first activation reads the block input (kept for the skip): not in place
            layers += [nn.LeakyReLU(SLOPE, inplace=i > 0), conv3x3(channels, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MSLapSRN(nn.Module):
    """MS-LapSRN: one set of weights shared by every level, so one model runs x2, x4, x8, ...

    Feature embedding per level: R applications of one recursive block with
    local residual learning: ``NS`` no skip, ``DS`` skip from the previous
    block's output, ``SS`` skip from the level's input features (best).
    Depth = (D * R + 1) * L + 2.
    """

    def __init__(
        self,
        depth: int = 5,
        recursions: int = 8,
        skip: Skip = "SS",
        levels: int = 3,
        channels: int = 64,
    ) -> None:
        super().__init__()
        if skip not in ("NS", "DS", "SS"):
            raise ValueError(f"skip must be NS, DS or SS, not {skip!r}")
        self.depth, self.recursions, self.skip, self.levels = depth, recursions, skip, levels
        self.input_conv = conv3x3(1, channels)
        self.block = RecursiveBlock(depth, channels)
        self.upsample = FeatureUpsample(channels)
        self.residual = conv3x3(channels, 1)
        self.image_up = ImageUpsample()

    def embed(self, source: torch.Tensor) -> torch.Tensor:
        """R recursions of the shared block with the chosen local skip, then the LeakyReLU before the upsampler."""
        if winograd.usable(source) and self.recursions > 0:
            return self._embed_winograd(source)
        x = source
        for _ in range(self.recursions):
            out = self.block(x)
            if self.skip == "SS":
                out = out + source
            elif self.skip == "DS":
                out = out + x
            x = out
        return F.leaky_relu(x, SLOPE)

    def _embed_winograd(self, source: torch.Tensor) -> torch.Tensor:
        """``embed`` at CPU inference: the activations and the block's skip fused into Winograd convs."""
        src = winograd.FeatureMap.from_tensor(source)
        convs = self.block.body[1::2]
        x, free = src, []  # free: buffers no longer read, reused as outputs
        for r in range(self.recursions):
            skip = {"SS": src, "DS": x, "NS": None}[self.skip]
            for i, conv in enumerate(convs):
                last = i == len(convs) - 1
                post = SLOPE if last and r == self.recursions - 1 else 1.0
                y = winograd.conv3x3(x, conv, pre=SLOPE, post=post, skip=skip if last else None,
                                     out=free.pop() if free else None)
                if x is not src and x is not skip:
                    free.append(x)
                x = y
            if skip is not None and skip is not src:
                free.append(skip)
        del src, skip, free  # only x is still needed: peak memory while copying it out
        return x.to_tensor()

    def forward(self, lr: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
        n = self.levels if levels is None else levels
        if n < 1:
            raise ValueError(f"levels must be >= 1, got {n}")
        features = self.input_conv(lr)
        image, outputs = lr, []
        for i in range(n):
            embedded = self.embed(features)
            if i == n - 1:  # nothing reads the last level's features but its residual conv
                image = self.image_up(image) + upsample_then_residual(self.upsample, self.residual, embedded)
            else:
                features = self.upsample(embedded)
                image = self.image_up(image) + self.residual(features)
            outputs.append(image)
        return outputs


def count_parameters(model: nn.Module) -> int:
    """Trainable parameter count, the figure the papers and the released weights quote."""
    return sum(p.numel() for p in model.parameters())
