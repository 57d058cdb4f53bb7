"""lapsrn: LapSRN and MS-LapSRN super-resolution that reproduces the papers.

Importing this package is cheap: models, weights and inference are imported
when first used, and training, plotting or export code never is.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "__version__"]


def load(model: str | None = None, *, tile: int | None = None, max_memory: int = 3 << 29, device: str = "cpu"):
    """An Upscaler for a bundled name, a .safetensors path or an official .mat (None: the default model).

    ``tile`` (LR tile side) and ``max_memory`` (bytes for feature maps and
    output planes; beyond it the image is tiled) have the CLI's defaults; ``device`` is any torch device.
    Inference is float32: the released weights and ours are float32, and
    half precision on CPU is slower and less accurate.

    >>> import lapsrn
    >>> up = lapsrn.load()
    >>> type(up).__name__
    'Upscaler'
    """
    from .inference import Upscaler
    from .weights import load as load_weights

    net, _ = load_weights(model)
    return Upscaler(net.to(device), device=device, tile=tile, max_memory=max_memory)
