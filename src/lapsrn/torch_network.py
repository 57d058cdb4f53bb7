"""The PyTorch reference network behind the engine's interface, for GPUs (``--device cuda`` / ``mps``).

Inference on a CPU runs the engine (``lapsrn.engine``); this adapter lets the
same Upscaler (tiling, colour, quantisation) drive ``models.py`` on any torch
device, in float32 or, on CUDA, float16.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .weights import ModelSpec


class TorchNetwork:
    """An (h, w) float32 luminance plane -> the pyramid's planes, computed by a reference module on a torch device."""

    def __init__(self, module: nn.Module, device: str = "cpu", half: bool = False) -> None:
        self.module = module.eval().to(device, torch.float16 if half else torch.float32)
        self.device, self.dtype = device, torch.float16 if half else torch.float32

    @classmethod
    def from_weights(
        cls, spec: ModelSpec, state: dict[str, np.ndarray], device: str = "cpu", half: bool = False
    ) -> TorchNetwork:
        """A fresh reference module holding these weights."""
        module = spec.build()
        module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
        return cls(module, device, half)

    @torch.inference_mode()
    def __call__(self, y: np.ndarray, levels: int, last_only: bool = False) -> list[np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(y, np.float32))[None, None].to(self.device, self.dtype)
        outs = self.module(x, levels)
        return [o[0, 0].float().cpu().numpy() for o in (outs[-1:] if last_only else outs)]
