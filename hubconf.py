"""torch.hub entry points: torch.hub.load("path/to/lapsrn", "lapsrn", source="local").

Weights come from the package (bundled, sha256-checked against their card) or
from a path you give; nothing is downloaded.
"""

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "scipy", "PIL", "safetensors", "tqdm", "numba", "threadpoolctl", "png", "tifffile"]

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


def lapsrn(model: str | None = None, tile: int | None = None, device: str = "auto"):
    """An Upscaler: bundled default (None), a bundled name, a .safetensors or an official .mat path.

    ``up.upscale(image, scale)`` upscales PIL / NumPy / torch images; ``device``
    as in ``lapsrn.load`` (auto: CUDA when available, else the CPU engine).
    """
    import lapsrn as package

    return package.load(model, tile=tile, device=device)


def lapsrn_net(model: str | None = None):
    """The PyTorch reference network (models.py) with those weights, in eval mode: LR Y (N, 1, h, w) -> levels."""
    from lapsrn.weights import load

    return load(model)[0]
