"""Running a model on images: Y through the network, Cb/Cr (and alpha) bicubic, as the authors do.

``super_resolve`` is the single code path shared by ``lapsrn upscale``,
``lapsrn evaluate`` and the Python API, so what you upscale is exactly what
was scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import protocol as P

MAX_LEVELS = 6  # x64: beyond this a "scale" is a typo, not a request


def levels_for(scale: float) -> int:
    """Pyramid levels needed for a scale: the next power of two at or above it."""
    if not math.isfinite(scale) or scale <= 1:
        raise ValueError(f"scale must be a number > 1, got {scale}")
    n = math.ceil(math.log2(scale) - 1e-9)
    if n > MAX_LEVELS:
        raise ValueError(f"scale {scale} is too large (at most {2 ** MAX_LEVELS})")
    return n


BYTES_PER_FEATURE = 4 * 64 * 4  # four live float32 maps of 64 channels (measured: 3 to 3.6 at the largest level)
CHUNK_OVERHEAD = 64 << 20  # the last level runs in row chunks (models.CHUNK_BYTES) and its temporaries


def feature_bytes(h: int, w: int, levels: int) -> int:
    """Estimated peak memory of one forward pass on an h x w LR input.

    The 64-channel maps live at the resolutions below the output (the last
    level's upsampled features are made in row chunks), so the largest is at
    half the output size.
    """
    return int(sum(h * w * 4**l for l in range(levels)) * BYTES_PER_FEATURE) + CHUNK_OVERHEAD


def receptive_margin(net: nn.Module, levels: int) -> int:
    """LR pixels of context a tile needs so its interior equals the whole-image result.

    Each 3x3 conv at level l (resolution 2^l) widens the field by 2^-l LR px;
    the transposed convs add about one pixel of their level. Rounded up, plus two.
    """
    from .models import LapSRN

    if isinstance(net, LapSRN):
        convs = [net.depth] * levels
    else:
        convs = [net.depth * net.recursions] * levels
    reach = 1.0  # input conv
    for l, n in enumerate(convs):
        reach += (n + 1) / 2**l + 2 / 2**l  # convs at this level, upsampler, residual + image branch
    return int(math.ceil(reach)) + 2


def _tiles(length: int, tile: int) -> list[tuple[int, int]]:
    """Half-open core intervals covering [0, length), as few as tiles of at most `tile` allow, of equal size."""
    n = -(-length // tile)
    step = -(-length // n)
    return [(a, min(a + step, length)) for a in range(0, length, step)]


@dataclass
class Upscaler:
    """A network in eval mode and how to run it: device, tile size, memory budget."""

    net: nn.Module
    device: str = "cpu"
    tile: int | None = None  # LR tile side; None = automatic from max_memory
    max_memory: int = 3 << 29  # bytes for feature maps + output planes; tiling keeps within it (1.5 GiB)

    def __post_init__(self) -> None:
        # once, not on every tile; channels-last: oneDNN's fastest layout for 64-channel 3x3 convs (~1.5x on CPU)
        self.net.to(self.device, memory_format=torch.channels_last)

    @property
    def max_levels(self) -> int | None:
        """Levels this network can run; None when it shares weights across levels (MS-LapSRN)."""
        from .models import LapSRN

        return self.net.levels if isinstance(self.net, LapSRN) else None

    def tile_size(self, h: int, w: int, levels: int, reserved: int = 0) -> int | None:
        """LR tile side to use, or None to run the whole image at once.

        ``reserved``: bytes of the budget already taken (the output planes), so
        feature maps and outputs together stay within ``max_memory``.
        """
        if self.tile:
            return self.tile if self.tile < max(h, w) else None
        budget = max(self.max_memory - reserved, 0)
        if feature_bytes(h, w, levels) <= budget:
            return None
        margin = receptive_margin(self.net, levels)
        per_pixel = feature_bytes(1, 1, levels) - CHUNK_OVERHEAD
        side = int(math.sqrt(max(budget - CHUNK_OVERHEAD, 0) / per_pixel)) - 2 * margin
        if side < 16:
            raise MemoryError(f"--max-memory {self.max_memory >> 20} MB is too small for x{2 ** levels} (tiles < 16 px)")
        return side

    def upscale(self, image, scale: float = 4):
        """Upscale a PIL image, NumPy array or torch tensor; returns the same kind, layout and dtype.

        >>> import numpy as np, lapsrn
        >>> lapsrn.load().upscale(np.zeros((8, 6, 3), np.uint8), 2).shape
        (16, 12, 3)
        """
        from .upscale import upscale_image

        return upscale_image(self, image, scale)

    def pyramid(self, image, levels: int | None = None) -> list:
        """Every pyramid level (x2, x4, ...) of one forward pass, each as the same kind as ``image``.

        >>> import numpy as np, lapsrn
        >>> [a.shape for a in lapsrn.load().pyramid(np.zeros((8, 6), np.uint8))]
        [(16, 12), (32, 24), (64, 48)]
        """
        from .upscale import upscale_image

        n = levels or getattr(self.net, "levels", 3)
        return upscale_image(self, image, 2**n, all_levels=True)

    @torch.inference_mode()
    def _run(self, y: np.ndarray, levels: int, last_only: bool = False) -> list[np.ndarray]:
        """Whole-plane forward pass."""
        x = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None, None].to(self.device)
        outs = self.net(x.contiguous(memory_format=torch.channels_last), levels)
        return [o[0, 0].cpu().numpy() for o in (outs[-1:] if last_only else outs)]

    def pyramid_y(self, y: np.ndarray, levels: int, last_only: bool = False) -> list[np.ndarray]:
        """Every level's output (or only the last) for one luminance plane, float32, tiled if needed."""
        if self.max_levels is not None and levels > self.max_levels:
            raise ValueError(
                f"this LapSRN has {self.max_levels} level(s) (x{2 ** self.max_levels} at most); "
                f"x{2 ** levels} needs an MS-LapSRN model"
            )
        h, w = y.shape
        first = levels if last_only else 1
        tile = self.tile_size(h, w, levels, reserved=sum(h * w * 4**l * 4 for l in range(first, levels + 1)))
        if tile is None:
            return self._run(y, levels, last_only)
        m = receptive_margin(self.net, levels)
        outs = [np.empty((h * 2**l, w * 2**l), np.float32) for l in range(first, levels + 1)]
        for y0, y1 in _tiles(h, tile):
            for x0, x1 in _tiles(w, tile):
                py0, px0 = max(y0 - m, 0), max(x0 - m, 0)
                part = self._run(y[py0 : min(y1 + m, h), px0 : min(x1 + m, w)], levels, last_only)
                for l, (out, res) in enumerate(zip(outs, part), start=first):
                    f = 2**l
                    out[y0 * f : y1 * f, x0 * f : x1 * f] = res[(y0 - py0) * f : (y1 - py0) * f, (x0 - px0) * f : (x1 - px0) * f]
        return outs


BAND_PIXELS = 2 << 20  # output pixels composed at a time: bounds the float64 colour temporaries
BAND_MARGIN = 6  # LR rows of context for the bicubic kernels at a band's edges (at most 4 needed)


def quantize(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """[0, 1] floats to the output sample type: uint8 as MATLAB im2uint8, uint16 alike, floats as they are."""
    from .io import to_uint8, to_uint16

    if np.dtype(dtype) == np.uint8:
        return to_uint8(img)
    if np.dtype(dtype) == np.uint16:
        return to_uint16(img)
    return img.astype(dtype, copy=False)


def _compose_band(img: np.ndarray, ycc: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
    """Output image from the network's Y: gray back from studio range, or Cb/Cr bicubic + BT.601 to RGB."""
    size = (P.output_size(img.shape[0], scale), P.output_size(img.shape[1], scale))
    if y.shape != size:
        y = P.imresize(y, size=size)
    if img.ndim == 2:
        return np.clip((y - 16 / 255) * (255 / 219), 0.0, 1.0)
    out = P.imresize(ycc, scale)
    out[..., 0] = y
    return P.ycbcr2rgb(out)


def _compose(img: np.ndarray, ycc: np.ndarray, y: np.ndarray, scale: float, dtype=np.float64) -> np.ndarray:
    """_compose_band over horizontal bands of the LR image, written straight into the output type.

    Bands overlap by BAND_MARGIN LR rows and keep only their own rows, so the
    result equals composing the whole image at once (tested) while float64
    temporaries stay a few MB. Only integer scales put band edges on whole
    output rows; other scales compose in one piece.
    """
    h, w = img.shape[:2]
    oh, ow = P.output_size(h, scale), P.output_size(w, scale)
    f = y.shape[0] // h  # resolution of the network's output, in output rows per LR row
    if scale != int(scale):
        return quantize(_compose_band(img, ycc, y, scale), dtype)
    s = int(scale)
    out = np.empty((oh, ow, *img.shape[2:]), dtype)
    rows = max(BAND_PIXELS // (ow * s), 8)
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        a0, a1 = max(r0 - BAND_MARGIN, 0), min(r1 + BAND_MARGIN, h)
        band = _compose_band(img[a0:a1], ycc[a0:a1], y[a0 * f : a1 * f], scale)
        out[r0 * s : r1 * s] = quantize(band[(r0 - a0) * s : (r1 - a0) * s], dtype)
    return out


def super_resolve(upscaler: Upscaler, img: np.ndarray, scale: float, dtype=np.float64) -> np.ndarray:
    """Upscale float64 HxW (gray) or HxWx3 (RGB) in [0, 1], the authors' way.

    RGB: BT.601 Y through the network; Cb/Cr bicubic-upscaled; back to RGB.
    Gray: treated as RGB with three equal channels (Y = 16/255 + 219/255 g),
    so gray and colour images take the same path. A scale that is not a power
    of two runs to the next level and is resized down bicubically, as the
    official MS-LapSRN code does for x3. Output is clipped to [0, 1] and of
    ``dtype``: float64, or uint8/uint16 quantised band by band, which keeps a
    large upscale's memory near the size of its output file.
    """
    ycc = P.rgb2ycbcr(P.gray_to_rgb(img))
    y = upscaler.pyramid_y(ycc[..., 0], levels_for(scale), last_only=True)[-1]
    return _compose(img, ycc, y, scale, dtype)


def super_resolve_pyramid(upscaler: Upscaler, img: np.ndarray, levels: int, dtype=np.float64) -> list[np.ndarray]:
    """x2, x4, ... x2^levels of one image from a single forward pass."""
    ycc = P.rgb2ycbcr(P.gray_to_rgb(img))
    ys = upscaler.pyramid_y(ycc[..., 0], levels)
    return [_compose(img, ycc, y, 2**l, dtype) for l, y in enumerate(ys, start=1)]


def bicubic(img: np.ndarray, scale: float) -> np.ndarray:
    """The papers' baseline: MATLAB bicubic upscaling of every channel, clipped to [0, 1]."""
    return np.clip(P.imresize(img, scale), 0.0, 1.0)
