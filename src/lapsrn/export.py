"""``lapsrn export --onnx``: the network as ONNX with dynamic height and width, checked against PyTorch.

Optional: needs ``pip install 'lapsrn[export]'`` (onnx, onnxruntime). Uses
torch's TorchScript-based exporter, which handles MS-LapSRN's shared,
unrolled levels with dynamic spatial axes; the dynamo exporter adds the
onnxscript dependency and gains nothing for this graph.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

PARITY_SIZES = [(24, 20), (37, 51)]  # odd and even sides: the crop in the feature upsampler must hold


def export_onnx(net: nn.Module, levels: int, out: Path) -> float:
    """Write the ONNX graph (input lr: N x 1 x H x W; outputs x2, x4, ...) and return the parity error."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeError("ONNX export needs onnx and onnxruntime: pip install 'lapsrn[export]'") from None
    from .io import atomic_path

    net = net.eval()
    names = [f"x{2**l}" for l in range(1, levels + 1)]
    axes = {"lr": {0: "n", 2: "h", 3: "w"}} | {n: {0: "n", 2: f"h{n}", 3: f"w{n}"} for n in names}

    class Pyramid(nn.Module):
        """Fix the number of levels so the exported graph has no Python arguments."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(self.net(lr, levels))

    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pyramid(),
            (torch.rand(1, 1, 16, 16),),
            str(tmp),
            input_names=["lr"],
            output_names=names,
            dynamic_axes=axes,
            dynamo=False,
            opset_version=17,
        )
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        worst = 0.0
        with torch.inference_mode():
            for h, w in PARITY_SIZES:
                x = torch.rand(1, 1, h, w)
                for ours, ref in zip(session.run(None, {"lr": x.numpy()}), net(x, levels), strict=True):
                    worst = max(worst, float(np.abs(ours - ref.numpy()).max()))
        if worst > 1e-4:
            raise RuntimeError(f"ONNX parity check failed: max difference {worst:.2e} against PyTorch")
    return worst
