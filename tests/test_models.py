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


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (6, 6)])
def test_feature_upsampler_is_the_transposed_conv_cropped_bottom_right(size):
    """MatConvNet crop [0 1 0 1]: the full (2h + 1) x (2w + 1) output minus its last row and column."""
    from lapsrn.models import FeatureUpsample

    torch.manual_seed(0)
    up = FeatureUpsample(8)
    x = torch.randn(2, 8, *size)
    full = torch.nn.functional.conv_transpose2d(x, up.deconv.weight, up.deconv.bias, stride=2)
    assert full.shape[-2:] == (2 * size[0] + 1, 2 * size[1] + 1)
    assert torch.equal(up(x), full[..., :-1, :-1])


@pytest.mark.parametrize(
    "net",
    [LapSRN(levels=1, depth=2), LapSRN(levels=4, depth=3), MSLapSRN(depth=4, recursions=2, levels=2)],
    ids=["LapSRN-1", "LapSRN-4", "MSLapSRN"],
)
def test_spec_shapes_are_the_state_dict(net):
    """The loader checks files against ModelSpec.shapes() without torch: it must list exactly the model's tensors."""
    from lapsrn.weights import spec_of

    assert spec_of(net).shapes() == {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_the_reference_is_plain_pytorch():
    """models.py is the papers' figure: it imports neither the engine nor any inference code."""
    import ast
    import inspect

    import lapsrn.models as M

    imported = set()
    for node in ast.walk(ast.parse(inspect.getsource(M))):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert imported <= {"__future__", "typing", "torch", "torch.nn.functional"}, imported
