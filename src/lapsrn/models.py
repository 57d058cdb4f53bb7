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

The papers' ablations are options of these modules, off by default (the
released architectures are the defaults): ``LapSRN(sharing="shared")`` uses
one level's weights at every level, ``reconstruction="direct"`` drops the
image branch so each level predicts its HR image, and ``OneStep`` is the
network without a pyramid: the same convolutions at the LR size, then the
features upsampled to the final size at once.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Skip = Literal["NS", "DS", "SS"]
Sharing = Literal["separate", "shared"]
Reconstruction = Literal["residual", "direct"]
SLOPE = 0.2  # LeakyReLU negative slope used throughout both papers
DETAIL_GAIN = 10.0  # the discriminator sees 10 x (patch - its 3x3 mean): detail of order one


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


class FeatureUpsample(nn.Module):
    """x2 transposed conv, 3x3, cropped to exactly 2h x 2w (MatConvNet crop [0 1 0 1])."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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


class LapSRNLevel(nn.Module):
    """One LapSRN level: D x (conv, LeakyReLU), upsample, LeakyReLU; plus its residual and image branch.

    ``reconstruction="direct"`` (ablation): no image branch, the last conv predicts the level's HR image.
    """

    def __init__(self, depth: int, channels: int = 64, reconstruction: Reconstruction = "residual") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [conv3x3(channels, channels), nn.LeakyReLU(SLOPE)]
        layers += [FeatureUpsample(channels), nn.LeakyReLU(SLOPE)]
        self.features = nn.Sequential(*layers)
        self.residual = conv3x3(channels, 1)
        self.image_up = ImageUpsample() if reconstruction == "residual" else None

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features for the next level, this level's image) from the level's input features and image."""
        features = self.features(features)
        if self.image_up is None:
            return features, self.residual(features)
        return features, self.image_up(image) + self.residual(features)


class LapSRN(nn.Module):
    """LapSRN: separate weights per level; depth D convs per level (10 in the x2/x4 release, 5 in x8).

    Ablation options: ``sharing="shared"`` keeps one level's weights for every
    level (MS-LapSRN's D{depth}R1 without its pre-activation), which also lets
    it run more levels than it was built with; ``reconstruction="direct"``
    predicts each level's HR image instead of a residual.
    """

    def __init__(
        self,
        levels: int = 2,
        depth: int = 10,
        channels: int = 64,
        sharing: Sharing = "separate",
        reconstruction: Reconstruction = "residual",
    ) -> None:
        super().__init__()
        self.levels, self.depth, self.sharing, self.reconstruction = levels, depth, sharing, reconstruction
        self.input_conv = conv3x3(1, channels)
        count = 1 if sharing == "shared" else levels
        self.pyramid = nn.ModuleList(LapSRNLevel(depth, channels, reconstruction) for _ in range(count))

    def forward(self, lr: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
        n = self.levels if levels is None else levels
        shared = self.sharing == "shared"
        if n < 1 or (n > self.levels and not shared):
            raise ValueError(f"this LapSRN has {self.levels} levels, asked for {n}")
        features = F.leaky_relu(self.input_conv(lr), SLOPE)
        image, outputs = lr, []
        for i in range(n):
            features, image = self.pyramid[0 if shared else i](features, image)
            outputs.append(image)
        return outputs


class OneStep(nn.Module):
    """Ablation without the pyramid (FSRCNN-like): input conv, D*L convs at the LR size, then the
    features upsampled x2 L times at the end; one conv predicts the residual, added to the input
    upsampled by L bilinear-initialised image deconvs. Returns only the final image, as a one-item list.
    """

    def __init__(self, levels: int = 2, depth: int = 5, channels: int = 64) -> None:
        super().__init__()
        self.levels, self.depth = levels, depth
        self.input_conv = conv3x3(1, channels)
        layers: list[nn.Module] = []
        for _ in range(depth * levels):
            layers += [conv3x3(channels, channels), nn.LeakyReLU(SLOPE)]
        for _ in range(levels):
            layers += [FeatureUpsample(channels), nn.LeakyReLU(SLOPE)]
        self.features = nn.Sequential(*layers)
        self.residual = conv3x3(channels, 1)
        self.image_up = nn.Sequential(*(ImageUpsample() for _ in range(levels)))

    def forward(self, lr: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
        if levels not in (None, self.levels):
            raise ValueError(f"this one-step network upscales x{2**self.levels} only, asked for x{2**levels}")
        features = self.features(F.leaky_relu(self.input_conv(lr), SLOPE))
        return [self.image_up(lr) + self.residual(features)]


class RecursiveBlock(nn.Module):
    """D pre-activation convs (LeakyReLU, conv), no batch norm; reused R times per level."""

    def __init__(self, depth: int, channels: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.LeakyReLU(SLOPE), conv3x3(channels, channels)]
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
        x = source
        for _ in range(self.recursions):
            out = self.block(x)
            if self.skip == "SS":
                out = out + source
            elif self.skip == "DS":
                out = out + x
            x = out
        return F.leaky_relu(x, SLOPE)

    def forward(self, lr: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
        n = self.levels if levels is None else levels
        if n < 1:
            raise ValueError(f"levels must be >= 1, got {n}")
        features = self.input_conv(lr)
        image, outputs = lr, []
        for _ in range(n):
            features = self.upsample(self.embed(features))
            image = self.image_up(image) + self.residual(features)
            outputs.append(image)
        return outputs


class Discriminator(nn.Module):
    """DCGAN's discriminator, for the papers' adversarial LapSRN: is a Y patch real HR or the network's output?

    Strided 4x4 convs halve the size and double the channels (64 to 512), each
    followed by LeakyReLU 0.2; then fully connected layers give one logit. Unlike
    DCGAN there is no batch norm: it would make a patch's score depend on the other
    patches of its batch (real and fake batches are scored apart, and under torchrun
    each rank sees a slice), and the papers' claim is about the loss, not the norm.
    An adaptive pool to 4x4 before the classifier lets any patch size in.

    It judges a patch's detail: the patch minus its 3x3 local mean, times 10 so
    that the detail's amplitude is of order one. The smooth part is what the
    Charbonnier loss already gets right, and on raw intensities the
    discriminator learned nothing against the bundled default's outputs (loss
    at 2 ln 2, accuracy 0.50-0.51, for 120 steps), while on the detail it was
    at 0.75 accuracy over steps 21-40 (scripts/discriminator_probe.py).
    """

    def __init__(self, channels: int = 64, blocks: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i in range(blocks):
            layers += [nn.Conv2d(cin, channels * 2**i, 4, stride=2, padding=1), nn.LeakyReLU(SLOPE)]
            cin = channels * 2**i
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * 16, 256), nn.LeakyReLU(SLOPE), nn.Linear(256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) patches -> (N,) logits, positive = judged real."""
        detail = DETAIL_GAIN * (x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return self.classifier(self.features(detail))[:, 0]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameter count, the figure the papers and the released weights quote."""
    return sum(p.numel() for p in model.parameters())
