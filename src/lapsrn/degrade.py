"""Degradations of the LR image: the JPEG, noise and blur that real photos carry and the protocol's LR lacks.

Two uses, one implementation of each step:

* evaluation (``lapsrn evaluate --degrade noise:5,jpeg:75``): the protocol's LR,
  then the listed steps in order, on the colour image, as a user's file would
  have them: JPEG by a real encoder (Pillow's libjpeg, 4:2:0 chroma), noise
  with a seed fixed per image so every run scores the same inputs;
* training (``lapsrn train --degrade-clean 0.2``): each HR patch's LR made by a
  random chain -- blur, downsampling kernel, noise, JPEG -- drawn from
  (seed, step), so a resumed run sees the same inputs; the targets stay the
  clean pyramid.

JPEG on a Y-only training sample: the network only ever sees luminance (chroma
is upscaled bicubically), and a colour JPEG stores luminance as its own plane,
JFIF's full-range Y = 0.299 R + 0.587 G + 0.114 B, quantised with the luminance
table; chroma subsampling never touches it. The protocol's Y is the same
weighted sum, scaled into 16..235. So the sample's Y is mapped to JFIF's range,
rounded to 8 bits, encoded as a grayscale JPEG at the drawn quality (the same
luminance table and 8x8 DCT blocks) and mapped back: the luma a colour JPEG of
that quality would decode to, but for the rounding of its RGB <-> YCbCr steps.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import numpy as np

from . import protocol as P

KINDS = ("blur", "noise", "jpeg")
KERNELS = ("bicubic", "bilinear", "area")


@dataclass(frozen=True)
class Step:
    """One degradation: blur (Gaussian sigma, LR px), noise (sigma in 8-bit levels) or jpeg (quality)."""

    kind: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"


def parse(text: str) -> list[Step]:
    """'noise:5,jpeg:75' -> steps, or a ValueError saying what is accepted."""
    steps = []
    for part in text.split(","):
        kind, _, value = part.strip().partition(":")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if kind not in KINDS or not np.isfinite(number):
            raise ValueError(f"--degrade {text!r}: expected steps like jpeg:75, noise:5 or blur:1, joined by commas")
        if kind == "jpeg" and not (1 <= number <= 100 and number == int(number)):
            raise ValueError(f"--degrade {text!r}: JPEG quality is an integer in 1..100")
        if kind in ("noise", "blur") and not 0 <= number <= 255:
            raise ValueError(f"--degrade {text!r}: {kind} sigma must be in 0..255")
        steps.append(Step(kind, number))
    return steps


def describe(steps: list[Step]) -> str:
    """Steps as --degrade reads them."""
    return ",".join(map(str, steps))


# ---------------------------------------------------------------- the steps


def gaussian_kernel(sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """Normalised 2-D Gaussian, rotated by ``angle`` (radians); isotropic when the sigmas are equal."""
    radius = int(np.ceil(3 * max(sigma_x, sigma_y, 0.1)))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / max(sigma_x, 1e-3)) ** 2 + (v / max(sigma_y, 1e-3)) ** 2))
    return k / k.sum()


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel, reflecting at the borders."""
    from scipy.ndimage import convolve

    if img.ndim == 2:
        return convolve(img, kernel, mode="reflect")
    return np.stack([convolve(img[..., c], kernel, mode="reflect") for c in range(img.shape[2])], axis=-1)


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of ``sigma`` 8-bit levels, clipped to [0, 1]."""
    return np.clip(img + rng.standard_normal(img.shape) * (sigma / 255.0), 0.0, 1.0)


def jpeg_rgb(img: np.ndarray, quality: int) -> np.ndarray:
    """A colour (or gray) float image through a real JPEG encoder and decoder, at 8 bits."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(P.im2uint8(img)).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer), dtype=np.float64) / 255.0


def jpeg_y(y: np.ndarray, quality: int) -> np.ndarray:
    """The protocol's Y plane as a colour JPEG's luminance would decode (see the module docstring)."""
    full = (y * 255.0 - 16.0) * (255.0 / 219.0)  # JFIF's full-range luma
    decoded = jpeg_rgb(np.clip(full, 0, 255) / 255.0, quality) * 255.0
    return (decoded * (219.0 / 255.0) + 16.0) / 255.0


def downscale(img: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """HR -> LR by an integer factor: the protocol's bicubic, Pillow's antialiased bilinear, or area (block mean)."""
    if kernel == "bicubic":
        return P.imresize(img, 1.0 / scale)
    h, w = img.shape[0] // scale, img.shape[1] // scale
    if kernel == "area":
        return img[: h * scale, : w * scale].reshape(h, scale, w, scale).mean(axis=(1, 3))
    from PIL import Image

    small = Image.fromarray(np.asarray(img, np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float64)


# ---------------------------------------------------------------- evaluation


def image_seed(name: str) -> int:
    """A fixed seed per image name: the same noise every run, different between images."""
    return zlib.crc32(name.encode())


def degrade_lr(lr: np.ndarray, steps: list[Step], name: str) -> np.ndarray:
    """The protocol's float LR after ``steps``, in order (evaluation)."""
    rng = np.random.default_rng(image_seed(name))
    out = lr
    for step in steps:
        if step.kind == "blur":
            out = blur(out, gaussian_kernel(step.value, step.value, 0.0))
        elif step.kind == "noise":
            out = add_noise(out, step.value, rng)
        else:
            out = jpeg_rgb(np.clip(out, 0, 1), int(step.value))
    return out


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class Recipe:
    """How training draws a degraded LR: each step applied with probability 1/2 (JPEG 3/4), ranges as given."""

    clean: float  # share of patches with the protocol's clean bicubic LR
    blur: float  # largest Gaussian sigma, LR px (0 = never)
    noise: float  # largest noise sigma, 8-bit levels (0 = never)
    jpeg: tuple[int, int]  # quality range (0, 0) = never


def degrade_patch(hr: np.ndarray, scale: int, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """A Y HR patch's LR through a random chain: blur, downsampling kernel, noise, JPEG (training)."""
    if rng.random() < recipe.clean:
        return P.imresize(hr, 1.0 / scale)
    img = hr.astype(np.float64)
    if recipe.blur > 0 and rng.random() < 0.5:
        sx, sy = rng.uniform(0.1 * recipe.blur, recipe.blur, size=2) * scale  # LR px -> HR px
        if rng.random() < 0.5:
            sy = sx  # isotropic
        img = blur(img, gaussian_kernel(sx, sy, rng.uniform(0, np.pi)))
    lr = downscale(img, scale, KERNELS[int(rng.integers(len(KERNELS)))])
    if recipe.noise > 0 and rng.random() < 0.5:
        lr = add_noise(lr, rng.uniform(0, recipe.noise), rng)
    if recipe.jpeg[1] > 0 and rng.random() < 0.75:
        lr = jpeg_y(np.clip(lr, 0, 1), int(rng.integers(recipe.jpeg[0], recipe.jpeg[1] + 1)))
    return lr
