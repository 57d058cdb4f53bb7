"""ONNX export: dynamic H/W, same outputs as PyTorch (the exporter's own parity check and ours)."""

import numpy as np
import onnxruntime as ort
import torch

from lapsrn.cli import main
from lapsrn.weights import load

from .conftest import shared_path


def test_export_official_lapsrn_x4(tmp_path, capsys):
    mat = shared_path("weights", "official", "LapSRN_x4.mat")
    assert main(["export", "--onnx", str(tmp_path / "x4.onnx"), "-m", str(mat)]) == 0
    assert "dynamic H/W" in capsys.readouterr().out
    session = ort.InferenceSession(str(tmp_path / "x4.onnx"), providers=["CPUExecutionProvider"])
    net, _ = load(mat)
    x = torch.rand(1, 1, 29, 33)
    with torch.inference_mode():
        ref = net(x)
    outs = session.run(None, {"lr": x.numpy()})
    assert [o.shape for o in outs] == [(1, 1, 58, 66), (1, 1, 116, 132)]
    assert max(float(np.abs(o - r.numpy()).max()) for o, r in zip(outs, ref, strict=True)) < 1e-4


def test_export_bundled_mslapsrn_three_levels(tmp_path):
    assert main(["export", "--onnx", str(tmp_path / "d.onnx"), "--levels", "3"]) == 0
    session = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["x2", "x4", "x8"]
