"""Architecture: parameter counts of the released models, shapes, weight sharing, bilinear init."""

import pytest
import torch

from lapsrn.models import LapSRN, MSLapSRN, bilinear_kernel, count_parameters
from lapsrn.weights import load

from .conftest import shared_path

RELEASED = {
    "LapSRN_x2.mat": 407_441,
    "LapSRN_x4.mat": 814_242,
    "LapSRN_x8.mat": 667_123,
    "MSLapSRN_D5R2.mat": 222_801,
    "MSLapSRN_D5R5.mat": 222_801,
    "MSLapSRN_D5R8.mat": 222_801,
}


@pytest.mark.parametrize("name,count", RELEASED.items())
def test_released_parameter_counts(name, count):
    net, spec = load(shared_path("weights", "official", name))
    assert count_parameters(net) == count
    assert count_parameters(spec.build()) == count  # an untrained model of the same spec has the same count


def test_official_specs():
    _, x8 = load(shared_path("weights", "official", "LapSRN_x8.mat"))
    assert (x8.arch, x8.levels, x8.depth) == ("LapSRN", 3, 5)
    _, ms = load(shared_path("weights", "official", "MSLapSRN_D5R8.mat"))
    assert (ms.arch, ms.depth, ms.recursions, ms.skip) == ("MSLapSRN", 5, 8, "SS")


def test_forward_returns_every_level():
    x = torch.rand(2, 1, 9, 11)
    outs = LapSRN(levels=3, depth=2)(x)
    assert [o.shape for o in outs] == [(2, 1, 18, 22), (2, 1, 36, 44), (2, 1, 72, 88)]
    ms = MSLapSRN(depth=2, recursions=2, levels=3)
    assert [o.shape[-1] for o in ms(x, levels=4)] == [22, 44, 88, 176]  # shared weights: any number of levels


@pytest.mark.parametrize("skip", ["NS", "DS", "SS"])
def test_mslapsrn_depth_and_parameters_do_not_grow_with_levels(skip):
    net = MSLapSRN(depth=5, recursions=2, skip=skip)
    assert count_parameters(net) == 222_801
    convs = sum(1 for m in net.block.modules() if isinstance(m, torch.nn.Conv2d))
    assert convs == 5


def test_skip_types_differ():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 8, 8)
    nets = {s: MSLapSRN(2, 3, s, 1) for s in ("NS", "DS", "SS")}
    state = nets["SS"].state_dict()
    outs = {}
    for s, n in nets.items():
        n.load_state_dict(state)
        outs[s] = n(x)[0]
    assert not torch.allclose(outs["NS"], outs["SS"]) and not torch.allclose(outs["DS"], outs["SS"])


def test_image_branch_starts_bilinear():
    k = bilinear_kernel(4)
    assert torch.allclose(k[0], torch.tensor([0.0625, 0.1875, 0.1875, 0.0625]))
    net = LapSRN(levels=1, depth=1)
    ramp = torch.arange(10.0).repeat(10, 1)[None, None]
    up = net.pyramid[0].image_up(ramp)[0, 0]
    # bilinear x2 of a ramp in the interior: steps of 0.5
    assert torch.allclose(up[5, 4:16].diff(), torch.full((11,), 0.5))


def test_lapsrn_rejects_more_levels_than_it_has():
    with pytest.raises(ValueError, match="2 levels"):
        LapSRN(levels=2, depth=1)(torch.rand(1, 1, 4, 4), levels=3)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(1, 1), (5, 7), (6, 6)])
def test_phase_upsampler_equals_the_transposed_conv(channels_last, size):
    """The speed path (four phase convs) computes exactly the released 3x3 stride-2 deconv, cropped."""
    from lapsrn.models import FeatureUpsample

    torch.manual_seed(0)
    up = FeatureUpsample(8)
    x = torch.randn(2, 8, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert up(x).shape == (2, 8, 2 * size[0], 2 * size[1])
    assert (up(x) - up.reference(x)).abs().max() < 1e-5


@pytest.mark.parametrize("arch", ["LapSRN", "MSLapSRN"])
def test_speed_paths_keep_outputs_and_gradients(arch):
    """In-place activations, phase upsampling and channels-last change neither outputs nor gradients."""
    import copy

    from lapsrn.models import FeatureUpsample

    torch.manual_seed(0)
    fast = LapSRN(levels=2, depth=2) if arch == "LapSRN" else MSLapSRN(depth=2, recursions=2, levels=2)
    slow = copy.deepcopy(fast)
    for m in slow.modules():
        if isinstance(m, torch.nn.LeakyReLU):
            m.inplace = False
        if isinstance(m, FeatureUpsample):
            m.forward = m.reference
    x = torch.rand(2, 1, 9, 11)
    outs = [net(x.contiguous(memory_format=fmt), 2) for net, fmt in ((fast, torch.channels_last), (slow, torch.contiguous_format))]
    for a, b in zip(*outs):
        assert (a - b).abs().max() < 1e-5
    for net, out in zip((fast, slow), outs):
        sum(o.square().sum() for o in out).backward()
    for (name, a), b in zip(fast.named_parameters(), slow.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("arch", ["LapSRN", "MSLapSRN"])
def test_last_level_in_row_chunks_equals_whole(arch, monkeypatch):
    """Inference computes the last level's upsample + residual in row chunks; the seams must not show."""
    import lapsrn.models as M

    torch.manual_seed(0)
    net = (LapSRN(levels=2, depth=2) if arch == "LapSRN" else MSLapSRN(depth=2, recursions=1, levels=2)).eval()
    x = torch.rand(1, 1, 37, 23)
    with torch.enable_grad():
        whole = [o.detach() for o in net(x, 2)]  # with autograd on, no chunks
    monkeypatch.setattr(M, "CHUNK_BYTES", 1)  # the smallest chunks: 8 rows
    with torch.inference_mode():
        chunked = net(x.contiguous(memory_format=torch.channels_last), 2)
    for a, b in zip(whole, chunked):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-5
