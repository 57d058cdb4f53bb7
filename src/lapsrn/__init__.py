"""lapsrn: LapSRN and MS-LapSRN super-resolution that reproduces the papers.

Importing this package is cheap: the API (``api``: ``load``, ``Upscaler``) is imported when first
used, and training, plotting or export code never is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import Upscaler, load

__version__ = "0.1.0"
__all__ = ["load", "Upscaler", "__version__"]


def __getattr__(name: str):
    """``lapsrn.load`` and ``lapsrn.Upscaler``, imported at first use."""
    if name in ("load", "Upscaler"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'lapsrn' has no attribute {name!r}")
