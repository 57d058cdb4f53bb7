"""The papers' ablation variants: shapes, parameter counts, weights files, inference, and training that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lapsrn.training as T
from lapsrn.api import Upscaler
from lapsrn.cli import main
from lapsrn.config import ConfigError, make_config
from lapsrn.data import make_pyramid
from lapsrn.losses import pyramid_loss
from lapsrn.models import LapSRN, MSLapSRN, OneStep, count_parameters
from lapsrn.weights import read, save, spec_of

from .conftest import smooth_image
from .train_fixtures import one_thread_fixture, tiny_config, tiny_data_fixture, tiny_flags  # noqa: F401 (fixtures)

VARIANTS = {
    "shared": lambda: LapSRN(2, 5, sharing="shared"),
    "direct": lambda: LapSRN(2, 5, reconstruction="direct"),
    "onestep": lambda: OneStep(2, 5),
}
CONV64 = 64 * 64 * 9 + 64  # one 3x3 64-channel conv with bias


def test_parameter_counts_match_the_papers_and_the_variants_arithmetic():
    separate, shared = LapSRN(2, 10), LapSRN(2, 10, sharing="shared")
    assert count_parameters(separate) == 814_242  # the released LapSRN x4, unchanged
    assert count_parameters(shared) == 407_441  # the MS-LapSRN paper's 812K -> 407K
    assert count_parameters(shared) == count_parameters(MSLapSRN(10, 1, "NS", 2))
    assert count_parameters(LapSRN(2, 5, reconstruction="direct")) == count_parameters(LapSRN(2, 5)) - 2 * 16
    # one-step: the same 10 convs and 2 feature upsamplers, one residual conv instead of two
    assert count_parameters(OneStep(2, 5)) == count_parameters(LapSRN(2, 5)) - (64 * 9 + 1)


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_shapes_levels_and_spec(name, tmp_path):
    torch.manual_seed(0)
    net = VARIANTS[name]()
    x = torch.rand(2, 1, 9, 7)
    outs = net(x)
    assert [o.shape for o in outs] == ([(2, 1, 36, 28)] if name == "onestep" else [(2, 1, 18, 14), (2, 1, 36, 28)])
    spec = spec_of(net)
    assert spec.shapes() == {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert not spec.released
    save(net, tmp_path / "v.safetensors")
    spec2, state = read(tmp_path / "v.safetensors")
    assert (spec2.arch, spec2.sharing, spec2.reconstruction) == (spec.arch, spec.sharing, spec.reconstruction)
    rebuilt = spec2.build()
    rebuilt.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    for a, b in zip(rebuilt(x), outs, strict=True):
        torch.testing.assert_close(a, b)


def test_shared_levels_are_one_module_and_run_beyond_their_build():
    net = LapSRN(2, 3, sharing="shared")
    assert len(net.pyramid) == 1
    assert net(torch.rand(1, 1, 5, 5), 3)[-1].shape == (1, 1, 40, 40)
    with pytest.raises(ValueError, match="has 2 levels"):
        LapSRN(2, 3)(torch.rand(1, 1, 5, 5), 3)
    with pytest.raises(ValueError, match="x4 only"):
        OneStep(2, 3)(torch.rand(1, 1, 5, 5), 1)


def test_direct_reconstruction_has_no_image_branch():
    torch.manual_seed(0)
    net = LapSRN(2, 2, reconstruction="direct")
    for level in net.pyramid:
        level.residual.weight.data.zero_()
        level.residual.bias.data.fill_(0.25)
    assert all(torch.equal(o, torch.full_like(o, 0.25)) for o in net(torch.rand(1, 1, 6, 6)))


@pytest.mark.parametrize("name", VARIANTS)
def test_upscaler_runs_variants_on_the_cpu_reference(name, rng):
    torch.manual_seed(1)
    net = VARIANTS[name]().eval()
    y = smooth_image(rng, 11, 9, channels=1).astype(np.float32)
    got = Upscaler(net).pyramid_y(y, 2, last_only=True)[-1]
    with torch.no_grad():
        want = net(torch.from_numpy(y)[None, None])[-1][0, 0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(
    "arch,kw",
    [
        ("LapSRN", {"sharing": "shared"}),
        ("LapSRN", {"reconstruction": "direct"}),
        ("OneStep", {}),
        ("LapSRN", {"loss": "l2"}),
    ],
)
def test_a_few_training_steps_reduce_the_loss(arch, kw, rng):
    torch.manual_seed(0)
    cfg = make_config("fast", None, arch=arch, depth=2, scales=[4], patch=32, batch=4, lr=1e-3, warmup=0, **kw)
    net = T.build_model(cfg)
    opt = T.make_optimizer(cfg, net)
    hr = torch.from_numpy(np.stack([smooth_image(rng, 32, 32, 1) for _ in range(4)])[:, None]).float()
    pyr = make_pyramid(hr, 2)

    def loss() -> torch.Tensor:
        preds = net(pyr.lr, 2)
        return pyramid_loss(preds, pyr.targets[-len(preds) :], cfg.loss)

    first = float(loss().detach())
    for _ in range(30):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < 0.7 * first


def test_variant_options_only_with_lapsrn():
    with pytest.raises(ConfigError, match="LapSRN options"):
        make_config("fast", None, arch="MSLapSRN", sharing="shared")
    with pytest.raises(ConfigError, match="reconstruction: unknown value 'none'"):
        make_config("fast", None, arch="LapSRN", reconstruction="none")


@pytest.mark.parametrize("flags", [["--arch", "OneStep"], ["--arch", "LapSRN", "--sharing", "shared"]])
def test_lapsrn_train_and_evaluate_a_variant(flags, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = tiny_flags(tiny_data, scales=[4], patch=32, val_scale=4, steps=2, val_every=2)
    assert main(["train", *args, *flags, "--out", str(out), "--quiet"]) == 0
    header, row = (out / "log.csv").read_text().splitlines()
    assert header.endswith(",val") and float(row.split(",")[-1]) > 10  # validated through the CPU reference
    spec, _ = read(out / "model.safetensors")
    assert spec.arch == flags[1] and not spec.released
    assert main(["evaluate", "-m", str(out / "model.safetensors"), "-d", str(tiny_data[1]), "-s", "4"]) == 0
    assert "| model.safetensors | x4 |" in capsys.readouterr().out
