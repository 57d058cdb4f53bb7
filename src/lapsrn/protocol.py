"""The papers' evaluation protocol, reimplemented in float64 NumPy.

Every convention here follows the authors' MATLAB code (``test_LapSRN.m``,
``SR_LapSRN.m``, ``utils/evaluate_SR.m``) and the MATLAB built-ins it calls:

* Images are float64 arrays in [0, 1], layout HxW (gray) or HxWxC, as MATLAB's
  ``im2double`` gives them. Nothing is clipped except where MATLAB clips.
* ``imresize``: MATLAB's bicubic ``imresize`` -- Keys cubic kernel (a = -0.5),
  kernel widened by 1/scale when shrinking (antialiasing), MATLAB's 1-based
  index arithmetic ``u = x/scale + 0.5*(1 - 1/scale)`` and symmetric
  (mirror, edge repeated) boundary handling. PIL and OpenCV differ from it,
  which is why their PSNRs do not match the papers.
* ``rgb2ycbcr`` / ``ycbcr2rgb``: ITU-R BT.601 studio range, as MATLAB defines
  them for double images (Y in [16/255, 235/255]).
* ``im2uint8``: round half up with saturation (MATLAB), not NumPy's
  round-half-to-even.
* ``modcrop``: crop bottom/right so each side is a multiple of the scale.
* ``shave``: drop ``scale`` pixels on each border before scoring.
* ``psnr``: peak 1.0 on float images. ``ssim``: MATLAB's ``ssim`` -- 11x11
  Gaussian window with sigma 1.5, replicate padding, K = (0.01, 0.03),
  dynamic range 1, mean of the full-size map.

We write this ourselves rather than use a library because no maintained
library reproduces MATLAB's resize and ssim bit-for-bit; the golden tests in
``tests/test_protocol.py`` pin them.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = [
    "cubic",
    "resize_matrix",
    "imresize",
    "rgb2ycbcr",
    "ycbcr2rgb",
    "im2uint8",
    "modcrop",
    "shave",
    "psnr",
    "ssim",
    "gray_to_rgb",
]

# MATLAB's rgb2ycbcr matrix (BT.601, studio range) for inputs in [0, 255].
_YCBCR = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as MATLAB's imresize uses."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's resize contributions along one axis: (indices, weights), each (out_len, taps).

    Output sample i is sum_k weights[i, k] * signal[indices[i, k]]. Taps that
    the symmetric boundary folds onto one input pixel are merged (their weights
    added), each row's taps are in ascending input order and rows are padded
    with zero weights: the sparse matrix's own order, so ``imresize`` (a gather
    in NumPy) and ``resize_matrix`` (torch training data) give the same numbers.
    """
    width = 4.0
    kernel = cubic
    if scale < 1:  # antialiasing: stretch the kernel over 1/scale input pixels
        width = 4.0 / scale

        def kernel(t: np.ndarray) -> np.ndarray:
            return scale * cubic(scale * t)

    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    weights = kernel(u[:, None] - idx)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric boundary: index 0 maps to 1, -1 to 2, in_len+1 to in_len, ...
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    src = mirror[np.mod(idx - 1, 2 * in_len).astype(np.int64)]
    # merge taps folded onto one pixel and sort each row by input index (src is ascending except at the
    # borders, where the fold reverses it); a pixel's weights add in tap order, as the sparse matrix sums them
    order = np.argsort(src, axis=1, kind="stable")
    src, weights = np.take_along_axis(src, order, 1), np.take_along_axis(weights, order, 1)
    for i in np.flatnonzero((np.diff(src, axis=1) == 0).any(axis=1)):  # rows with folded taps: few, at the borders
        cols, first = np.unique(src[i], return_index=True)
        merged = np.zeros(len(cols))
        for k, c in enumerate(src[i]):
            merged[np.searchsorted(cols, c)] += weights[i, k]
        src[i] = np.concatenate([cols, np.full(taps - len(cols), cols[-1])])
        weights[i] = np.concatenate([merged, np.zeros(taps - len(cols))])
    return src, weights


def resize_matrix(in_len: int, out_len: int, scale: float):
    """The contributions as a sparse (out_len, in_len) matrix M, resized = M @ signal (for torch's batches)."""
    from scipy import sparse

    src, weights = contributions(in_len, out_len, scale)
    rows = np.repeat(np.arange(out_len), src.shape[1])
    return sparse.csr_matrix((weights.ravel(), (rows, src.ravel())), shape=(out_len, in_len))


def output_size(in_len: int, scale: float) -> int:
    """MATLAB's output length for a scale factor: ceil(in * scale)."""
    return int(math.ceil(in_len * scale - 1e-9))


def imresize(img: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` or ``imresize(img, [h w])`` on float64 HxW[xC]."""
    img = np.asarray(img, dtype=np.float64)
    h, w = img.shape[:2]
    if size is None:
        if scale is None:
            raise ValueError("give scale or size")
        out_h, out_w = output_size(h, scale), output_size(w, scale)
        sh = sw = float(scale)
    else:
        out_h, out_w = size
        sh, sw = out_h / h, out_w / w
    rest = img.shape[2:]
    out = resize_rows_by(img.reshape(h, -1), *contributions(h, out_h, sh))  # rows: (out_h, w * C)
    out = np.swapaxes(out.reshape(out_h, w, *rest), 0, 1).reshape(w, -1)  # (w, out_h * C)
    out = resize_rows_by(out, *contributions(w, out_w, sw))  # columns: (out_w, out_h * C)
    return np.swapaxes(out.reshape(out_w, out_h, *rest), 0, 1)


def resize_rows_by(x: np.ndarray, src: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Resize along axis 0 of a 2-D array: each output row a weighted sum of input rows, taps in order
    (``contributions``); the whole plane's taps on a band of its rows give those rows of the whole resize."""
    out = np.zeros((src.shape[0], x.shape[1]))
    for k in range(src.shape[1]):
        out += weights[:, k, None] * x[src[:, k]]
    return out


def rgb2ycbcr(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` for double HxWx3 in [0, 1]: BT.601 studio range, not clipped."""
    return rgb @ (_YCBCR / 255.0).T + _YCBCR_OFFSET / 255.0


def ycbcr2rgb(ycbcr: np.ndarray) -> np.ndarray:
    """MATLAB ``ycbcr2rgb`` for double HxWx3, clipped to [0, 1] as MATLAB does."""
    rgb = (ycbcr * 255.0 - _YCBCR_OFFSET) @ np.linalg.inv(_YCBCR).T
    return np.clip(rgb, 0.0, 1.0)


def im2uint8(img: np.ndarray) -> np.ndarray:
    """MATLAB ``im2uint8`` for double: saturate, then round half up."""
    return np.floor(np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop bottom/right so height and width are multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Drop ``border`` pixels on every side (the papers use border = scale)."""
    if border == 0:
        return img
    return img[border:-border, border:-border]


def gray_to_rgb(img: np.ndarray) -> np.ndarray:
    """Three equal channels: how the authors' copies store gray test images (Set14 bridge)."""
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB with peak 1.0 (MATLAB ``psnr`` on double images)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def _gaussian_filter(img: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """The window of MATLAB's ``ssim``: radius ceil(3*sigma) (11x11 at 1.5), replicate padding."""
    radius = int(math.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(t**2) / (2 * sigma**2))
    g /= g.sum()
    padded = np.pad(img, radius, mode="edge")
    # Separable correlation: rows then columns.
    tmp = sum(g[k] * padded[k : k + img.shape[0], :] for k in range(2 * radius + 1))
    return sum(g[k] * tmp[:, k : k + img.shape[1]] for k in range(2 * radius + 1))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MATLAB ``ssim(a, b)`` on double gray images: Gaussian sigma 1.5, replicate pad, mean map."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = _gaussian_filter(a), _gaussian_filter(b)
    var_a = _gaussian_filter(a * a) - mu_a**2
    var_b = _gaussian_filter(b * b) - mu_b**2
    cov = _gaussian_filter(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))
