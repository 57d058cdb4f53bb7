"""The Winograd F(4x4, 3x3) path computes what the plain PyTorch convolutions compute."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lapsrn import winograd
from lapsrn.inference import Upscaler
from lapsrn.models import SLOPE, LapSRN, MSLapSRN
from lapsrn.weights import load

from .conftest import shared_path, smooth_image


def test_numba_is_there():
    """A dependency: without it the fast path would silently be off, and the figures in the docs wrong."""
    assert winograd.enabled()


def test_kernels_compile_without_a_writable_cache_folder(monkeypatch):
    """Numba refuses cache=True when it finds no writable folder (read-only install, no HOME): no cache then."""
    import numba

    real = numba.njit

    def njit(*args, cache=False, **kwargs):
        if cache:
            raise RuntimeError("cannot cache function: no locator available")
        return real(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", njit)
    kernels = winograd._kernels.__wrapped__()
    assert len(kernels) == 4 and all(type(k._cache).__name__ == "NullCache" for k in kernels)


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (5, 7), (13, 9), (40, 33)])
@pytest.mark.parametrize("channels", [(64, 64), (3, 5)])
def test_conv3x3_equals_conv2d(size, channels):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(*channels, 3, padding=1)
    x = torch.randn(1, channels[0], *size)
    skip = torch.randn(1, channels[1], *size)
    with torch.inference_mode():
        cases = [
            ({}, conv(x)),
            ({"post": SLOPE}, F.leaky_relu(conv(x), SLOPE)),
            ({"pre": SLOPE}, conv(F.leaky_relu(x, SLOPE))),
            ({"pre": SLOPE, "skip": winograd.FeatureMap.from_tensor(skip)}, conv(F.leaky_relu(x, SLOPE)) + skip),
        ]
        for kwargs, want in cases:
            got = winograd.conv3x3(winograd.FeatureMap.from_tensor(x), conv, **kwargs).to_tensor()
            assert got.shape == want.shape
            assert (got - want).abs().max() <= 1e-5 * max(1.0, want.abs().max().item()), kwargs


@pytest.mark.parametrize("points, m, r", [([0, 1, -1, 2, -2], 4, 3), ([0, 1, -1, 2], 4, 2)])
def test_toom_cook_matrices_compute_a_correlation(points, m, r):
    at, g, bt = winograd.toom_cook(points, m, r)
    d, k = np.random.default_rng(0).standard_normal((2, m + r - 1))
    k = k[:r]
    want = [sum(d[i + j] * k[j] for j in range(r)) for i in range(m)]
    assert np.allclose(at @ ((g @ k) * (bt @ d)), want, atol=1e-12)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (13, 9), (24, 17)])
@pytest.mark.parametrize("post", [1.0, SLOPE])
def test_upsample2x_equals_the_released_transposed_conv(size, post):
    """The 3x3 stride-2 transposed conv, cropped (MatConvNet crop [0 1 0 1]), by Winograd F(4x4, 2x2)."""
    from lapsrn.models import FeatureUpsample

    torch.manual_seed(0)
    up = FeatureUpsample(6)
    x = torch.randn(1, 6, *size)
    with torch.inference_mode():
        want = F.leaky_relu(up.reference(x), post)
        got = winograd.upsample2x(winograd.FeatureMap.from_tensor(x), up.deconv, post).to_tensor()
    assert got.shape == want.shape == (1, 6, 2 * size[0], 2 * size[1])
    assert (got - want).abs().max() < 1e-5 * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("band_bytes", [1, 40_000, 1 << 30])  # one tile row per band, a few, all at once
def test_last_level_bands_equal_the_plain_computation(band_bytes):
    from lapsrn.models import FeatureUpsample

    torch.manual_seed(0)
    up, residual = FeatureUpsample(8), torch.nn.Conv2d(8, 1, 3, padding=1)
    x = torch.randn(1, 8, 37, 11)
    with torch.inference_mode():
        want = residual(F.leaky_relu(up.reference(x), SLOPE))
        got = winograd.upsample_then_residual(x, up.deconv, SLOPE, residual, band_bytes)
    assert got.shape == want.shape and (got - want).abs().max() < 1e-5 * max(1.0, want.abs().max().item())


def test_feature_map_border_is_the_zero_padding():
    x = torch.randn(1, 3, 6, 9)
    fm = winograd.FeatureMap.from_tensor(x)
    assert fm.data.shape == (4 * 2 + 2, 4 * 3 + 2, 3)
    inside = np.zeros(fm.data.shape[:2], bool)
    inside[1:7, 1:10] = True
    assert not fm.data[~inside].any()
    assert torch.equal(fm.to_tensor(), x)


def test_reused_output_buffer_gives_the_same_result():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    x = winograd.FeatureMap.from_tensor(torch.randn(1, 8, 11, 6))
    dirty = winograd.FeatureMap.empty(11, 6, 8)
    dirty.data[1:12, 1:7] = 7.0  # stale numbers inside must be overwritten, the border left zero
    with torch.inference_mode():
        fresh = winograd.conv3x3(x, conv).to_tensor()
        reused = winograd.conv3x3(x, conv, out=dirty).to_tensor()
    assert torch.equal(fresh, reused)


def _both_paths(net: torch.nn.Module, x: torch.Tensor, monkeypatch) -> tuple[list, list]:
    with torch.inference_mode():
        fast = net(x.contiguous(memory_format=torch.channels_last))
        monkeypatch.setenv("LAPSRN_WINOGRAD", "0")
        plain = net(x.contiguous(memory_format=torch.channels_last))
        monkeypatch.delenv("LAPSRN_WINOGRAD")
    return fast, plain


@pytest.mark.parametrize("net", [LapSRN(levels=2, depth=3), MSLapSRN(depth=2, recursions=3, skip="SS", levels=3),
                                 MSLapSRN(depth=2, recursions=3, skip="DS", levels=3),
                                 MSLapSRN(depth=3, recursions=2, skip="NS", levels=2)], ids=["LapSRN", "SS", "DS", "NS"])
def test_networks_equal_on_both_paths(net, monkeypatch):
    """Every skip type (the buffer reuse in MSLapSRN differs for each) and odd sizes."""
    torch.manual_seed(0)
    for p in net.parameters():  # weights large enough that a wrong skip or activation would show
        p.data.normal_(0, 0.1)
    net.eval()
    fast, plain = _both_paths(net, torch.rand(1, 1, 19, 26), monkeypatch)
    for a, b in zip(fast, plain):
        scale = b.abs().max().item()
        assert scale > 0.1 and (a - b).abs().max() < 1e-5 * max(1.0, scale)


@pytest.mark.parametrize("name", ["LapSRN_x4.mat", "MSLapSRN_D5R8.mat"])
def test_official_networks_equal_on_both_paths(name, rng, monkeypatch):
    net = load(shared_path("weights", "official", name))[0]
    y = smooth_image(rng, 45, 38, 1)
    fast, plain = _both_paths(net, torch.from_numpy(y).float()[None, None], monkeypatch)
    assert max((a - b).abs().max().item() for a, b in zip(fast, plain)) < 2e-5


def test_not_used_while_training_or_with_the_switch_off(monkeypatch):
    torch.manual_seed(0)
    net = LapSRN(levels=1, depth=2)
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.rand(1, 1, 8, 8)
    net(x)[0].sum().backward()  # autograd on: plain convs, gradients flow
    assert not calls and net.input_conv.weight.grad is not None
    with torch.inference_mode():
        net(x)
    used = len(calls)
    assert used == 3  # the level's two convs and its residual conv
    with torch.inference_mode(), winograd.disabled():
        net(x)
    assert len(calls) == used
    monkeypatch.setenv("LAPSRN_WINOGRAD", "0")
    with torch.inference_mode():
        net(x)
    assert len(calls) == used


def test_upscaler_output_is_unchanged_by_the_fast_path(lapsrn_x4, rng, monkeypatch):
    """What a user gets, in uint8: at most one level of rounding apart, almost everywhere identical."""
    img = (smooth_image(rng, 40, 50) * 255).round().astype(np.uint8)
    fast = Upscaler(lapsrn_x4).upscale(img, 4)
    monkeypatch.setenv("LAPSRN_WINOGRAD", "0")
    plain = Upscaler(lapsrn_x4).upscale(img, 4)
    diff = np.abs(fast.astype(int) - plain.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
