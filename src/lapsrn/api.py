"""The Python API: ``lapsrn.load`` gives an ``Upscaler``, which upscales images, files, folders and videos.

An ``Upscaler`` is a ``tiling.Tiler`` (the network, its memory budget and threads) with the methods a
user calls. Pictures of any kind go through the one path the command uses (``colour.super_resolve``),
so a PIL image, a NumPy array and a file give the same samples. Settings (threads, memory) belong to
the Upscaler and hold for its calls only; the process's are left as they were.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from .colour import levels_for
from .io import Picture, _picture, encode, to_float
from .memory import DEFAULT_MAX_MEMORY
from .pictures import pyramid_picture, upscale_picture
from .tiling import Tiler, resolve_device

if TYPE_CHECKING:
    from .batch import BatchResult
    from .video import VideoResult

Image = TypeVar("Image")  # a PIL image, NumPy array or torch tensor: the same kind comes back


class Upscaler(Tiler):
    """A model ready to upscale: images of any kind, files, folders and videos, within its memory budget.

    Made by ``lapsrn.load``; or from a network directly (``Upscaler(net, spec)``, or a PyTorch reference
    module, whose weights are copied: see ``tiling.Tiler``).
    """

    def upscale(self, image: Image, scale: float = 4) -> Image:
        """Upscale a PIL image, NumPy array or torch tensor; returns the same kind, layout and dtype.

        >>> import numpy as np, lapsrn
        >>> lapsrn.load().upscale(np.zeros((8, 6, 3), np.uint8), 2).shape
        (16, 12, 3)
        """
        return upscale_image(self, image, scale)

    def pyramid(self, image: Image, levels: int | None = None) -> list[Image]:
        """Every pyramid level (x2, x4, ...) of one forward pass, each as the same kind as ``image``.

        >>> import numpy as np, lapsrn
        >>> [a.shape for a in lapsrn.load().pyramid(np.zeros((8, 6), np.uint8))]
        [(16, 12), (32, 24), (64, 48)]
        """
        n = levels or self.spec.levels
        return upscale_image(self, image, 2**n, all_levels=True)

    def upscale_folder(
        self,
        src: str | Path,
        dst: str | Path,
        scale: float = 4,
        log: Callable[[str, bool], None] | None = None,
        progress: Callable[[int, int], None] | None = None,
        **options,
    ) -> BatchResult:
        """Upscale every image of the folder ``src`` into the folder ``dst``, as ``lapsrn upscale -i DIR`` does.

        ``options``: ``BatchOptions``' fields (``suffix``, ``ext``, ``recursive``, ``shard``, ``skip_existing``,
        ``overwrite``, ``all_levels``, ``quality``, ``png_compression``). A bad image is skipped and listed
        in the result's ``failed``; ``log(line, problem)`` and ``progress(done, total)`` follow the run.

        >>> import lapsrn, tempfile
        >>> lapsrn.load().upscale_folder(tempfile.mkdtemp(), tempfile.mkdtemp())
        Traceback (most recent call last):
        lapsrn.batch.BatchError: ...: no images found (use --recursive for sub-folders)
        """
        from .batch import BatchError, BatchOptions, plan, run

        src, dst = Path(src), Path(dst)
        if not src.is_dir():
            raise BatchError(f"{src}: not a folder (for one image, use upscale on the opened image)")
        opts = BatchOptions(scale=scale, **options)
        levels_for(scale)
        return run(self, plan(src, dst, opts), opts, True, log or (lambda line, problem: None), progress)

    def upscale_video(self, src: str | Path, dst: str | Path, scale: float = 2, **options) -> VideoResult:
        """Upscale a video file into ``dst`` (mp4, m4v, mov, mkv, webm, avi); needs PyAV (``lapsrn[video]``).

        ``options``: ``codec`` (h264, hevc, vp9, av1), ``crf``, ``preset``, ``progress(done, total)``,
        ``log(line)``: see ``lapsrn.video.upscale_video``. An interrupted call's finished segments are kept
        beside ``dst`` and the same call resumes after them, writing the same file.
        """
        from .video import VideoOptions, upscale_video

        hooks = {k: options.pop(k) for k in ("progress", "log") if k in options}
        return upscale_video(self, src, dst, scale, VideoOptions(**options), **hooks)


def load(
    model: str | Path | None = None,
    *,
    tile: int | None = None,
    max_memory: int | None = None,
    device: str = "auto",
    half: bool = False,
    threads: int | None = None,
) -> Upscaler:
    """An Upscaler for a bundled name, a .safetensors path or an official .mat (None: the default model).

    ``tile`` (LR tile side) and ``max_memory`` (bytes for feature maps and
    output planes; beyond it the image is tiled) have the CLI's defaults.
    ``device``: 'auto' (CUDA when PyTorch is installed and sees a GPU, else the
    CPU engine), 'cpu' (the engine, no torch), 'cuda', 'cuda:N' or 'mps' (the
    PyTorch reference; ``half`` for float16 on CUDA). ``threads``: CPU threads
    for this Upscaler's calls (default: every core).

    >>> import lapsrn
    >>> up = lapsrn.load()
    >>> type(up).__name__
    'Upscaler'
    """
    from .weights import read

    spec, state = read(model)
    memory = DEFAULT_MAX_MEMORY if max_memory is None else max_memory
    return Upscaler.from_weights(
        spec, state, resolve_device(device), half, tile=tile, max_memory=memory, threads=threads
    )


def _from_kind(image) -> tuple[Picture, object]:
    """Picture from a PIL image, NumPy array or torch tensor, plus how to turn results back.

    Samples go through ``io.to_float``, the file reader's conversion, so arrays,
    tensors and files accept and refuse the same things. torch is used only if the
    caller already imported it: a tensor cannot exist otherwise, and the API works
    without torch installed.
    """
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        raise ValueError(
            f"upscale takes an image, not a path: open it first (PIL.Image.open({str(image)!r})), "
            "or upscale files with `lapsrn upscale -i`"
        )
    if isinstance(image, Image.Image):
        pic = _picture(image)
        return pic, lambda out: encode(out, "TIFF" if pic.bits > 8 else "PNG")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(image, torch.Tensor):
        return _from_tensor(torch, image)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"expected HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    px, bits = to_float(arr)
    alpha = px[..., 3] if arr.ndim == 3 and arr.shape[-1] == 4 else None
    px = px[..., :3] if alpha is not None else px

    def to_array(out: Picture) -> np.ndarray:
        res = out.pixels if out.alpha is None else np.dstack([out.pixels, out.alpha])
        return res.astype(arr.dtype, copy=False)  # 8/16-bit results are already quantised

    return Picture(px, alpha, bits), to_array


def _from_tensor(torch, image) -> tuple[Picture, object]:
    """HxW, CxHxW or 1xCxHxW tensor -> Picture, read by its dtype like a NumPy array (uint8 stays 0..255); a
    batch of one comes back as a batch of one."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"one image at a time: got a batch of {image.shape[0]} (loop over it)")
        pic, back = _from_tensor(torch, image[0])
        return pic, lambda out: back(out)[None]
    t = image.detach().cpu()
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # half / bfloat16: NumPy has no bfloat16
    arr = t.numpy()
    arr = np.moveaxis(arr, 0, -1) if arr.ndim == 3 else arr
    squeeze = arr.ndim == 3 and arr.shape[-1] == 1
    pic, back = _from_kind(arr[..., 0] if squeeze else arr)

    def to_tensor(out: Picture):
        res = back(out)
        t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(res, -1, 0) if res.ndim == 3 else res))
        return (t[None] if squeeze else t).to(image.dtype)

    return pic, to_tensor


def upscale_image(upscaler: Tiler, image, scale: float, all_levels: bool = False):
    """Python API: a PIL image, NumPy array or torch tensor in, the same kind, layout and dtype out.

    Arrays: HxW, HxWx3 or HxWx4; uint8, uint16 or float in [0, 1]. Tensors:
    HxW or CxHxW (C = 1, 3, 4) of the same dtypes. NaN or infinite samples are refused. With ``all_levels`` a list
    of every pyramid level up to ``scale`` (a power of two) comes back.
    """
    pic, back = _from_kind(image)
    if all_levels:
        return [back(p) for p in pyramid_picture(upscaler, pic, levels_for(scale))]
    return back(upscale_picture(upscaler, pic, scale))
