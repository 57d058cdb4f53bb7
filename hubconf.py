"""torch.hub entry points: torch.hub.load("path/to/lapsrn", "lapsrn", source="local").

Weights come from the package (bundled, sha256-checked against their card) or
from a path you give; nothing is downloaded.
"""

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "scipy", "PIL", "safetensors", "tqdm"]

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


def lapsrn(model: str | None = None, tile: int | None = None):
    """An Upscaler: bundled default (None), a bundled name, a .safetensors or an official .mat path.

    ``up.net`` is the torch module (LR Y in, list of pyramid levels out);
    ``up.upscale(image, scale)`` upscales PIL / NumPy / torch images.
    """
    import lapsrn as package

    return package.load(model, tile=tile)
