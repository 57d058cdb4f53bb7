"""Weights: .mat import, safetensors round trip with metadata, and refusal of bad files."""

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lapsrn.cli import main
from lapsrn.models import MSLapSRN
from lapsrn.weights import WeightsError, load, save

from .conftest import shared_path


def test_convert_roundtrip_is_exact(tmp_path, capsys):
    src = shared_path("weights", "official", "MSLapSRN_D5R2.mat")
    dst = tmp_path / "ms.safetensors"
    assert main(["convert", str(src), "-o", str(dst)]) == 0
    assert "MSLapSRN D5" in capsys.readouterr().out
    a, spec_a = load(src)
    b, spec_b = load(dst)
    assert (spec_b.arch, spec_b.depth, spec_b.recursions, spec_b.skip) == ("MSLapSRN", 5, 2, "SS")
    assert "MSLapSRN_D5R2.mat" in spec_b.extra["source"]
    x = torch.rand(1, 1, 12, 10)
    with torch.no_grad():
        for ya, yb in zip(a(x), b(x)):
            assert torch.equal(ya, yb)


def test_save_keeps_metadata(tmp_path):
    net = MSLapSRN(depth=2, recursions=3, skip="DS", levels=2)
    save(net, tmp_path / "m.safetensors", trained_by="test")
    loaded, spec = load(tmp_path / "m.safetensors")
    assert (spec.depth, spec.recursions, spec.skip, spec.levels) == (2, 3, "DS", 2)
    assert spec.extra["trained_by"] == "test"
    assert all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), loaded.state_dict().values()))


def test_random_bytes_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load(bad)


def test_truncated_safetensors_is_refused(tmp_path):
    good = tmp_path / "m.safetensors"
    save(MSLapSRN(1, 1), good)
    data = good.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 4):
        part = tmp_path / f"cut{cut}.safetensors"
        part.write_bytes(data[:cut])
        with pytest.raises(WeightsError):
            load(part)


def test_wrong_shapes_are_refused(tmp_path):
    net = MSLapSRN(depth=2, recursions=1)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    state["input_conv.weight"] = torch.zeros(32, 1, 3, 3)
    meta = {"format": "lapsrn", "arch": "MSLapSRN", "depth": "2", "levels": "3", "recursions": "1", "skip": "SS"}
    save_file(state, str(tmp_path / "w.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match="do not fit"):
        load(tmp_path / "w.safetensors")


def test_safetensors_without_our_metadata_is_refused(tmp_path):
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError, match="metadata"):
        load(tmp_path / "other.safetensors")


class _Exploit:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickle_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = str(marker)
    for name in ("evil.pth", "evil.safetensors", "evil.pt"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(exploit))
        code = main(["upscale", "-i", str(path), "-o", str(tmp_path / "o.png"), "-m", str(path)])
        assert code == 1
        assert not marker.exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 3


def test_mat_that_is_not_lapsrn_is_refused(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "x.mat", {"net": np.zeros(3)})
    with pytest.raises(WeightsError):
        load(tmp_path / "x.mat")
    with pytest.raises(WeightsError, match="_opts"):
        load(shared_path("weights", "official", "MSLapSRN_D5R8_opts.mat"))


def test_missing_opts_beside_mslapsrn(tmp_path):
    src = shared_path("weights", "official", "MSLapSRN_D5R2.mat")
    lonely = tmp_path / "MSLapSRN_D5R2.mat"
    lonely.write_bytes(src.read_bytes())
    with pytest.raises(WeightsError, match="_opts.mat"):
        load(lonely)


def test_forged_metadata_does_not_build_a_huge_network(tmp_path):
    meta = {"format": "lapsrn", "arch": "MSLapSRN", "depth": "1000000", "levels": "3", "recursions": "1", "skip": "SS"}
    save_file({"x": torch.zeros(1)}, str(tmp_path / "f.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match="implausible"):
        load(tmp_path / "f.safetensors")
