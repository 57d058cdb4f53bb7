"""lapsrn: LapSRN and MS-LapSRN super-resolution that reproduces the papers.

Importing this package is cheap: models, weights and inference are imported
when first used, and training, plotting or export code never is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .inference import Upscaler

__version__ = "0.1.0"
__all__ = ["load", "__version__"]


def load(
    model: str | None = None,
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
    PyTorch reference; ``half`` for float16 on CUDA). ``threads``: CPU threads.

    >>> import lapsrn
    >>> up = lapsrn.load()
    >>> type(up).__name__
    'Upscaler'
    """
    from .inference import DEFAULT_MAX_MEMORY, Upscaler, resolve_device
    from .weights import read

    spec, state = read(model)
    return Upscaler.from_weights(
        spec,
        state,
        resolve_device(device),
        half,
        tile=tile,
        max_memory=DEFAULT_MAX_MEMORY if max_memory is None else max_memory,
        threads=threads,
    )
