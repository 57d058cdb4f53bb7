"""The CPU engine computes what the PyTorch reference (models.py) computes, and needs no torch to run."""

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lapsrn import engine
from lapsrn.api import Upscaler
from lapsrn.engine import native
from lapsrn.engine import network as N
from lapsrn.engine import winograd as W
from lapsrn.models import SLOPE, FeatureUpsample, ImageUpsample, LapSRN, MSLapSRN
from lapsrn.torch_network import TorchNetwork
from lapsrn.weights import load, read, spec_of

from .conftest import REPO, shared_path, smooth_image


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).numpy()


def _conv(conv: torch.nn.Conv2d) -> W.Conv:
    return W.Conv.from_weights(conv.weight.detach().numpy(), conv.bias.detach().numpy())


def _close(got: np.ndarray, want: torch.Tensor, rel: float = 3e-5) -> bool:
    """Equal to float32 rounding, relative to the largest value. F(6x6, 3x3) rounds more than F(4x4, 3x3) did:
    on the random networks below, whose values grow to 10^4, it came to 1.2e-5 of it, over the 1e-5 these
    tests allowed before. In uint8 the outputs are the reference's to one level on at most 0.1 % of the pixels
    (``test_uint8_output_matches_the_torch_path``)."""
    want = want.numpy() if isinstance(want, torch.Tensor) else want
    return got.shape == want.shape and np.abs(got - want).max() <= rel * max(1.0, np.abs(want).max())


def test_the_command_loads_the_kernels_without_numba(tmp_path):
    """Once compiled (by this process, if the cache was cold), a process loads the kernels' machine code with
    llvmlite and never imports Numba, whose start took 0.7 s."""
    W.image_upsample(np.ones((2, 2), np.float32), np.ones((4, 4), np.float32))  # compiled and cached by now
    code = "import sys; from lapsrn.cli import main; rc = main(sys.argv[1:]); print('numba' in sys.modules); exit(rc)"
    done = subprocess.run(
        [sys.executable, "-c", code, "upscale", "-i", str(REPO / "src/lapsrn/assets/sample.png"), "-o", "o.png"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
    assert (tmp_path / "o.png").stat().st_size > 0


CONV_IN_A_PROCESS = """
import sys, numpy as np
from lapsrn.engine import winograd as W
rng = np.random.default_rng(0)
x = W.FeatureMap.from_array(rng.standard_normal((13, 20, 64), dtype=np.float32))
conv = W.Conv.from_weights(rng.standard_normal((64, 64, 3, 3)) * 0.05, rng.standard_normal(64))
np.save(sys.argv[1], W.conv3x3(x, conv, post=0.2).inside)
"""


def test_numbas_cpu_name_picks_the_cpu_the_kernels_are_compiled_for(tmp_path):
    """NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, read as Numba reads them: kernels for another (here the most generic)
    CPU, kept in a cache file of their own, computing the same convolution."""
    env = {**os.environ, "LAPSRN_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMBA_CPU_NAME", None), env.pop("NUMBA_CPU_FEATURES", None)
    for name, extra in (("host", {}), ("generic", {"NUMBA_CPU_NAME": "generic"})):
        done = subprocess.run(
            [sys.executable, "-c", CONV_IN_A_PROCESS, str(tmp_path / f"{name}.npy")],
            env={**env, **extra},
            text=True,
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "cache").glob("kernels-*.o"))) == 2
    host, generic = np.load(tmp_path / "host.npy"), np.load(tmp_path / "generic.npy")
    assert np.abs(host).max() > 1 and _close(generic, host)


def _fresh_load(monkeypatch, cache: Path, built: list) -> dict:
    """Load the kernels again as a new process would, from ``cache``, with compiling stood in for by this
    process's object code (``built`` counts the compilations)."""
    native.functions()
    code = native._read(native._cache_file(native._target_machine()))
    assert code is not None
    monkeypatch.setenv("LAPSRN_CACHE_DIR", str(cache))
    monkeypatch.setattr(native, "build", lambda machine: built.append(1) or code)
    monkeypatch.setattr(native, "_functions", {})
    monkeypatch.setattr(native, "_engine", native._engine)  # the first load's code stays alive for later tests
    return native.functions()


def _upsample_works() -> bool:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    k = np.arange(16, dtype=np.float32).reshape(4, 4)
    want = F.conv_transpose2d(torch.from_numpy(x)[None, None], torch.from_numpy(k)[None, None], stride=2, padding=1)
    return np.array_equal(W.image_upsample(x, k), want[0, 0].numpy())


def test_a_damaged_cache_file_is_compiled_again(tmp_path, monkeypatch):
    """A file that fails its checksum is never loaded (the loader would crash on bad code): it is rebuilt."""
    built: list = []
    _fresh_load(monkeypatch, tmp_path, built)  # an empty folder: compiled once, and written
    path = native._cache_file(native._target_machine())
    assert built == [1] and path.exists()
    damaged = bytearray(path.read_bytes())
    damaged[-100] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert native._read(path) is None
    monkeypatch.setattr(native, "_functions", {})
    native.functions()
    assert built == [1, 1] and native._read(path) is not None and _upsample_works()
    monkeypatch.setattr(native, "_functions", {})
    native.functions()  # the file is good again: loaded, not compiled
    assert built == [1, 1] and _upsample_works()


def test_a_cache_file_of_another_user_is_not_run(tmp_path, monkeypatch):
    """Machine code from a file someone else could have written is compiled again instead."""
    built: list = []
    _fresh_load(monkeypatch, tmp_path, built)
    monkeypatch.setattr(native.os, "getuid", lambda: native.Path(tmp_path).stat().st_uid + 1)
    monkeypatch.setattr(native, "_functions", {})
    native.functions()
    assert built == [1, 1] and _upsample_works()


def test_a_user_without_a_home_folder_still_upscales(tmp_path, monkeypatch):
    """A container's bare uid has no home: nothing is cached, the kernels are compiled and run."""

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    built: list = []
    _fresh_load(monkeypatch, tmp_path, built)
    monkeypatch.delenv("LAPSRN_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(native.Path, "home", staticmethod(no_home))
    monkeypatch.setattr(native, "_functions", {})
    assert native.cache_folder() is None
    native.functions()
    assert built == [1, 1] and _upsample_works()


def test_maps_that_do_not_fit_the_conv_are_refused_before_the_compiled_code_reads_them():
    conv = W.Conv.from_weights(np.ones((8, 4, 3, 3), np.float32), np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="channels"):
        W.conv3x3(W.FeatureMap.from_array(np.ones((6, 6, 3), np.float32)), conv)
    with pytest.raises(ValueError, match="output map"):
        W.conv3x3(W.FeatureMap.from_array(np.ones((6, 6, 4), np.float32)), conv, out=W.FeatureMap.empty(6, 6, 4))
    with pytest.raises(ValueError, match="biases"):
        W.Upsampler.from_weights(np.ones((4, 4, 3, 3), np.float32), np.zeros(3, np.float32))


def test_without_a_writable_cache_folder_the_kernels_still_run(tmp_path, monkeypatch):
    (tmp_path / "a file").write_text("not a folder")
    built: list = []
    _fresh_load(monkeypatch, tmp_path / "a file", built)
    assert built == [1] and _upsample_works()


def test_the_command_says_when_it_compiles_the_kernels_and_when_it_cannot_keep_them(tmp_path, monkeypatch, capsys):
    """One line before a compile (a cold cache: seconds of silence otherwise; not under --quiet), none when the
    kernels load, and a warning, even under --quiet, where the cache folder is not writable."""
    from lapsrn.cli import main

    monkeypatch.setattr(native, "notice", None)  # the command sets it; put back afterwards
    _fresh_load(monkeypatch, tmp_path / "cache", [])
    (tmp_path / "a file").write_text("not a folder")
    sample = str(REPO / "src/lapsrn/assets/sample.png")
    cases = [("new", [], ["compiling"]), ("new", [], []), ("a file", [], ["compiling", "cannot keep"])]
    for cache, options, said in [*cases, ("a file", ["--quiet"], ["cannot keep"])]:
        monkeypatch.setenv("LAPSRN_CACHE_DIR", str(tmp_path / cache))
        monkeypatch.setattr(native, "_functions", {})
        assert main(["upscale", "-i", sample, "-o", str(tmp_path / "o.png"), *options]) == 0
        lines = [line for line in capsys.readouterr().err.splitlines() if "kernels" in line]
        assert len(lines) == len(said) and all(
            line.startswith("lapsrn: ") and w in line for w, line in zip(said, lines)
        )
        assert cache == "new" or str(tmp_path / cache) in lines[-1]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator is what is tuned")
def test_freed_memory_is_kept_for_small_passes_and_returned_for_large_ones():
    """After reuse_freed_memory (the command line's), a freed 16 MB array stays in the process for the next
    arrays while passes are small; a pass with larger maps runs with freed blocks returned to the system."""
    code = textwrap.dedent(
        """
        import os
        import numpy as np
        import lapsrn
        from lapsrn.engine import winograd as W

        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        def returned():  # bytes the process gives back when a touched 16 MB array is freed
            a = np.ones(4 << 20, np.float32)
            before = rss()
            del a
            return before - rss()

        assert W.reuse_freed_memory()
        net = lapsrn.load(None)
        y = np.random.default_rng(0).random((200, 200), dtype=np.float32)
        net.pyramid_y(y, 1)  # maps of 10 MB: kept
        kept = returned()
        net.pyramid_y(y, 2)  # maps of 41 MB: returned
        given = returned()
        net.pyramid_y(y, 1)
        print(kept, given, returned())
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    kept, given, kept_again = map(int, run.stdout.split()) if run.returncode == 0 else pytest.fail(run.stderr)
    mb = 1 << 20
    assert kept < mb and kept_again < mb and given > 15 * mb, (kept, given, kept_again)


def test_winograd_products_run_on_single_threaded_blas_then_restore_it():
    """Each band thread runs its own products, so BLAS must not spawn threads of its own meanwhile; after the
    pass BLAS gets back the threads it had (the cached controller restores them every time)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    with threadpool_limits(2, user_api="blas"):
        for _ in range(2):
            with W.single_threaded_blas():
                inside = blas_threads()
            assert inside == {1} and blas_threads() == {2}


@pytest.mark.parametrize("points, m, r", [([0, 1, -1, 2, -2, 0.5, -0.5], 6, 3), ([0, 1, -1, 2], 4, 2)])
def test_toom_cook_matrices_compute_a_correlation(points, m, r):
    at, g, bt = W.toom_cook(points, m, r)
    d, k = np.random.default_rng(0).standard_normal((2, m + r - 1))
    k = k[:r]
    want = [sum(d[i + j] * k[j] for j in range(r)) for i in range(m)]
    assert np.allclose(at @ ((g @ k) * (bt @ d)), want, atol=1e-12)


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (5, 7), (13, 9), (40, 33)])
@pytest.mark.parametrize("channels", [(64, 64), (3, 5), (1, 64), (64, 1)])
def test_conv3x3_equals_conv2d(size, channels):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(*channels, 3, padding=1)
    x = torch.randn(1, channels[0], *size)
    skip = torch.randn(1, channels[1], *size)
    fm = W.FeatureMap.from_array(_hwc(x))
    with torch.inference_mode():
        cases = [
            ({}, conv(x)),
            ({"post": SLOPE}, F.leaky_relu(conv(x), SLOPE)),
            ({"pre": SLOPE}, conv(F.leaky_relu(x, SLOPE))),
            ({"pre": SLOPE, "skip": W.FeatureMap.from_array(_hwc(skip))}, conv(F.leaky_relu(x, SLOPE)) + skip),
        ]
        for kwargs, want in cases:
            got = W.conv3x3(fm, _conv(conv), **kwargs).inside
            assert _close(got, _hwc(want)), kwargs


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (13, 9), (24, 17)])
@pytest.mark.parametrize("post", [1.0, SLOPE])
def test_upsample2x_equals_the_released_transposed_conv(size, post):
    """The 3x3 stride-2 transposed conv, cropped (MatConvNet crop [0 1 0 1]), by Winograd F(4x4, 2x2)."""
    torch.manual_seed(0)
    up = FeatureUpsample(6)
    x = torch.randn(1, 6, *size)
    with torch.inference_mode():
        want = F.leaky_relu(up(x), post)
    u = W.Upsampler.from_weights(up.deconv.weight.detach().numpy(), up.deconv.bias.detach().numpy())
    got = W.upsample2x(W.FeatureMap.from_array(_hwc(x)), u, post).inside
    assert got.shape == (2 * size[0], 2 * size[1], 6) and _close(got, _hwc(want))


@pytest.mark.parametrize("band_bytes", [1, 40_000, 1 << 30])  # one tile row per band, a few, all at once
def test_last_level_bands_equal_the_plain_computation(band_bytes):
    torch.manual_seed(0)
    up, residual = FeatureUpsample(8), torch.nn.Conv2d(8, 1, 3, padding=1)
    x = torch.randn(1, 8, 37, 11)
    with torch.inference_mode():
        want = residual(F.leaky_relu(up(x), SLOPE))[0, 0].numpy()
    u = W.Upsampler.from_weights(up.deconv.weight.detach().numpy(), up.deconv.bias.detach().numpy())
    got = np.zeros((74, 22), np.float32)
    W.add_upsample_residual(W.FeatureMap.from_array(_hwc(x)), u, SLOPE, _conv(residual), got, band_bytes)
    assert _close(got, want)


@pytest.mark.parametrize("size", [(1, 1), (1, 6), (2, 3), (3, 1), (9, 14)])
def test_composed_residual_equals_the_upsampler_then_the_residual_conv(size):
    """MS-LapSRN's residual straight from the embedding (one conv, 4 phase outputs), edges included."""
    torch.manual_seed(0)
    up, residual = FeatureUpsample(8), torch.nn.Conv2d(8, 1, 3, padding=1)
    x = torch.randn(1, 8, *size)
    with torch.inference_mode():
        want = residual(up(x))[0, 0].numpy()
    weights = [t.detach().numpy() for t in (up.deconv.weight, up.deconv.bias, residual.weight, residual.bias)]
    level = N.Level(
        W.Upsampler.from_weights(*weights[:2]), _conv(residual), np.zeros((4, 4)), N.compose_residual(*weights)
    )
    got = N.Network._composed_residual(W.FeatureMap.from_array(_hwc(x)), level)
    assert _close(got, want)


def test_only_a_linear_upsampler_is_composed_with_the_residual_conv(monkeypatch):
    """LapSRN's LeakyReLU after the upsampler forbids the composition; MS-LapSRN has none there."""

    def state(net: torch.nn.Module) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in net.state_dict().items()}

    ms = N.build("MSLapSRN", state(MSLapSRN(depth=2, recursions=1)), 2)
    assert ms.level(0).composed is not None
    calls = []
    real = N.Network._composed_residual
    monkeypatch.setattr(N.Network, "_composed_residual", staticmethod(lambda *a: calls.append(1) or real(*a)))
    ms(np.random.default_rng(0).random((9, 7), dtype=np.float32), 2)
    assert len(calls) == 2  # every level's residual takes the composed conv
    lapsrn = N.build("LapSRN", state(LapSRN(depth=2, levels=2)), 2, levels=2)
    assert all(lapsrn.level(i).composed is None for i in range(2))


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (17, 10)])
def test_image_upsample_equals_the_transposed_conv(size):
    torch.manual_seed(0)
    up = ImageUpsample()
    up.deconv.weight.data.normal_()  # any trained kernel, not only the bilinear initialisation
    x = torch.rand(1, 1, *size)
    with torch.inference_mode():
        want = up(x)[0, 0].numpy()
    assert _close(W.image_upsample(x[0, 0].numpy(), up.deconv.weight[0, 0].detach().numpy()), want)


def test_feature_map_border_is_the_zero_padding():
    x = np.random.default_rng(0).standard_normal((6, 9, 3)).astype(np.float32)
    fm = W.FeatureMap.from_array(x)
    assert fm.data.shape == (4 * 2 + 2, 4 * 3 + 2, 3)
    inside = np.zeros(fm.data.shape[:2], bool)
    inside[1:7, 1:10] = True
    assert not fm.data[~inside].any()
    assert np.array_equal(fm.inside, x)


@pytest.mark.parametrize("h, w, c", [(8, 8, 3), (300, 308, 64), (460, 460, 64)])
def test_empty_maps_have_a_zero_border_fresh_or_recycled(h, w, c, monkeypatch):
    """Small, mid-sized (side columns zeroed on the threads) and large (zeroed pages) fresh maps, and a recycled
    buffer whose earlier map was larger, all start with the zero border the convolutions read as padding."""
    assert W.FRESH_BYTES < 4 * 302 * 310 * 64 < W.REUSE_BYTES < 4 * 462 * 462 * 64  # the three cases
    empty = np.empty
    with monkeypatch.context() as patch:  # fresh memory as dirty as reused memory can be
        patch.setattr(W.np, "empty", lambda shape, dtype: np.full(shape, np.nan, dtype))
        fm = W.FeatureMap.empty(h, w, c)
    assert np.empty is empty
    for smaller in (False, True):
        inside = np.zeros(fm.data.shape[:2], bool)
        inside[1 : fm.h + 1, 1 : fm.w + 1] = True
        assert not fm.data[~inside].any()
        if not smaller:
            fm.data[...] = 1  # every element dirty, as a recycled buffer's may be
            fm.recycle()
            used, fm = fm.data, W.FeatureMap.empty(h - 1, w - 1, c)  # the same padded shape
            assert fm.data is used
    W.release_spares(keep=0)


def test_reused_output_buffer_gives_the_same_result():
    torch.manual_seed(0)
    conv = _conv(torch.nn.Conv2d(8, 8, 3, padding=1))
    x = W.FeatureMap.from_array(np.random.default_rng(0).standard_normal((11, 6, 8)).astype(np.float32))
    dirty = W.FeatureMap.empty(11, 6, 8)
    dirty.data[1:12, 1:7] = 7.0  # stale numbers inside must be overwritten, the border left zero
    assert np.array_equal(W.conv3x3(x, conv).data, W.conv3x3(x, conv, out=dirty).data)


def _reference(net: torch.nn.Module, y: np.ndarray, levels: int) -> list[np.ndarray]:
    with torch.inference_mode():
        return [o[0, 0].numpy() for o in net(torch.from_numpy(y)[None, None], levels)]


def _engine(net: torch.nn.Module) -> engine.Network:
    spec = spec_of(net)
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    return engine.build(spec.arch, state, spec.depth, spec.levels, spec.recursions, spec.skip)


NETS = {
    "LapSRN-1": lambda: LapSRN(levels=1, depth=2),
    "LapSRN-4": lambda: LapSRN(levels=4, depth=2),
    "SS": lambda: MSLapSRN(depth=2, recursions=3, skip="SS", levels=4),
    "DS": lambda: MSLapSRN(depth=2, recursions=3, skip="DS", levels=4),
    "NS": lambda: MSLapSRN(depth=3, recursions=2, skip="NS", levels=4),
}


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("size", [(1, 1), (2, 5), (19, 26)])
def test_networks_equal_the_reference(name, size):
    """Every architecture and skip (the buffer reuse differs for each), 1 to 4 levels, odd sizes down to 1x1."""
    torch.manual_seed(0)
    net = NETS[name]()
    for p in net.parameters():  # weights large enough that a wrong skip or activation would show
        p.data.normal_(0, 0.1)
    net.eval()
    y = np.random.default_rng(0).random(size, dtype=np.float32)
    fast = _engine(net)
    for levels in range(1, (net.levels if isinstance(net, LapSRN) else 4) + 1):
        got, want = fast(y, levels), _reference(net, y, levels)
        assert len(got) == len(want) == levels
        for a, b in zip(got, want):
            assert np.abs(b).max() > 0.1 and _close(a, b), (levels, np.abs(a - b).max())
        last = fast(y, levels, last_only=True)
        assert len(last) == 1 and np.array_equal(last[0], got[-1])


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("size", [(23, 9), (17, 14)])
def test_last_level_in_bands_equals_it_whole(name, size):
    """The thinnest bands, with their margins of context: the same pixels as the whole level."""
    torch.manual_seed(0)
    net = NETS[name]()
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    y = np.random.default_rng(0).random(size, dtype=np.float32)
    fast = _engine(net)
    thinnest = fast.band_rows(1, 100)
    assert thinnest == max(8, 2 * fast.band_margin)
    for levels in range(1, (net.levels if isinstance(net, LapSRN) else 3) + 1):
        whole, banded = fast(y, levels), fast(y, levels, band_bytes=1)
        assert (size[0] << (levels - 1)) > thinnest  # so the last level really ran in several bands
        for a, b in zip(banded, whole):
            assert _close(a, b), (levels, np.abs(a - b).max())


@pytest.mark.parametrize("name", ["LapSRN_x4.mat", "LapSRN_x8.mat", "MSLapSRN_D5R8.mat"])
def test_official_networks_equal_the_reference(name, rng):
    path = shared_path("weights", "official", name)
    spec, state = read(path)
    fast = engine.build(spec.arch, state, spec.depth, spec.levels, spec.recursions, spec.skip)
    y = smooth_image(rng, 45, 38, 1).astype(np.float32)
    levels = min(spec.levels, 3)
    for a, b in zip(fast(y, levels), _reference(load(path)[0], y, levels)):
        assert np.abs(a - b).max() < 2e-5


def test_uint8_output_matches_the_torch_path(lapsrn_x4, rng):
    """What a user gets, in uint8: at most one level of rounding apart, on at most 0.1 % of the pixels."""
    img = (smooth_image(rng, 40, 50) * 255).round().astype(np.uint8)
    fast = Upscaler(lapsrn_x4).upscale(img, 4)
    spec, state = spec_of(lapsrn_x4), {k: v.numpy() for k, v in lapsrn_x4.state_dict().items()}
    ref = Upscaler(TorchNetwork.from_weights(spec, state, "cpu"), spec).upscale(img, 4)
    diff = np.abs(fast.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3


def test_tiles_on_the_torch_path_equal_the_whole_image(lapsrn_x4, rng):
    """Tiling is the Upscaler's, whatever runs the network: the reference path tiles exactly too."""
    spec, state = spec_of(lapsrn_x4), {k: v.numpy() for k, v in lapsrn_x4.state_dict().items()}
    net = TorchNetwork.from_weights(spec, state, "cpu")
    y = smooth_image(rng, 70, 45, 1).astype(np.float32)
    whole = Upscaler(net, spec).pyramid_y(y, 2)
    tiled = Upscaler(net, spec, tile=24).pyramid_y(y, 2)
    assert all(np.abs(a - b).max() < 1e-5 for a, b in zip(whole, tiled))


def test_upscaler_leaves_a_torch_module_untouched(lapsrn_x4):
    """Converting a reference module copies its weights: its layout and values stay as they were."""
    before = {k: (v.clone(), v.stride()) for k, v in lapsrn_x4.state_dict().items()}
    Upscaler(lapsrn_x4).upscale(np.zeros((8, 8), np.uint8), 2)
    for k, v in lapsrn_x4.state_dict().items():
        assert torch.equal(v, before[k][0]) and v.stride() == before[k][1], k


def test_non_finite_network_output_is_an_error(tmp_path):
    """Finite weights that overflow float32 give an error, never a black image."""
    net = MSLapSRN(depth=3, recursions=2, levels=1).eval()
    for p in net.parameters():
        p.data.fill_(9000.0)  # below the loader's plausibility bound, yet six convs overflow float32
    with pytest.raises(ValueError, match="not finite"):
        Upscaler(net).upscale(np.full((8, 8), 200, np.uint8), 2)


BLOCK_TORCH = """
import sys
sys.modules["torch"] = None  # as if not installed: find_spec gives None, import raises ModuleNotFoundError
"""


def _run_cli(args: list[str], tmp_path, block_torch: bool = False) -> subprocess.CompletedProcess:
    """The lapsrn command in a fresh interpreter; prints whether torch got imported."""
    code = (BLOCK_TORCH if block_torch else "") + textwrap.dedent(f"""
        import sys
        from lapsrn.cli import main
        rc = main({args!r})
        print("torch imported:", sys.modules.get("torch") is not None)
        sys.exit(rc)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)


def test_upscale_never_imports_torch(tmp_path):
    sample = REPO / "src/lapsrn/assets/sample.png"
    done = _run_cli(["upscale", "-i", str(sample), "-o", "out.png", "-s", "2"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "torch imported: False" in done.stdout and (tmp_path / "out.png").stat().st_size > 0


def test_threads_upscaling_at_once_each_get_their_own_work_arrays():
    """Two threads upscaling different images at once get what each gets alone (no shared work arrays)."""
    from concurrent.futures import ThreadPoolExecutor

    import lapsrn

    up = lapsrn.load("default")
    rng = np.random.default_rng(3)
    images = [rng.random((40, 36)).astype(np.float32) for _ in range(2)]
    alone = [up.net(y, 2, True)[-1] for y in images]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            together = list(pool.map(lambda y: up.net(y, 2, True)[-1], images))
            for a, b in zip(alone, together):  # float32 rounding (the BLAS thread limit is process-wide, so
                # one thread leaving it can change another's summation order); corrupted arrays are off by far more
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bands_run_on_the_caller_and_a_helper_and_the_first_error_stops_them(monkeypatch):
    """map_threads: every item once, on the calling thread and the pool's; an error raised in either reaches
    the caller and stops both from taking more items; a call from inside a helper does not wait on the pool
    (whose one thread is running it) but finishes on its own."""
    import threading
    import time

    monkeypatch.setattr(W, "_threads", 2)
    monkeypatch.setattr(W, "_pool", None)
    caller, ran, where = threading.get_ident(), [], set()

    def work(item: int) -> None:
        ran.append(item)
        where.add(threading.get_ident())
        time.sleep(0.01)

    W.map_threads(work, range(20))
    assert sorted(ran) == list(range(20)) and caller in where and len(where) == 2

    for in_caller in (True, False):
        ran.clear()

        def failing(item: int, in_caller: bool = in_caller) -> None:
            ran.append(item)
            time.sleep(0.01)
            if (threading.get_ident() == caller) == in_caller:
                raise ValueError("this band failed")

        with pytest.raises(ValueError, match="this band failed"):
            W.map_threads(failing, range(100))
        assert len(ran) < 20  # stopped soon after, not run to the end

    ran.clear()
    nested = threading.Thread(target=W.map_threads, args=(lambda i: W.map_threads(work, range(4)), range(4)))
    nested.start()
    nested.join(timeout=30)
    assert not nested.is_alive() and len(ran) == 16
    W._pool.shutdown()


def test_kernels_are_compiled_with_their_arrays_apart():
    """LLVM is told that a kernel call's arrays do not overlap (noalias on every array pointer); without it,
    run-time overlap checks guard each vectorised channel loop (engine/kernels.py, scripts/speed_candidates.py)."""
    import re

    from lapsrn.engine import kernels

    xp, v, u = np.zeros((8, 8, 8), np.float32), np.empty((64, 1, 8), np.float32), np.empty((8, 8, 8), np.float32)
    kernels.input_transform(xp, v, u, 0, 1, 1, np.float32(1))
    ir = next(iter(kernels.input_transform.inspect_llvm().values()))
    head = next(line for line in ir.splitlines() if line.startswith("define") and "%arg.xp." in line)
    pointers = re.findall(r"ptr ([^,%]*)%arg\.(xp|v|u)\.", head)
    assert len(pointers) >= 9 and all("noalias" in attributes for attributes, _ in pointers), head


def test_without_torch_the_cpu_commands_work_and_train_names_the_extra(tmp_path):
    sample = REPO / "src/lapsrn/assets/sample.png"
    set5 = str(shared_path("datasets", "test", "Set5"))
    for command in (
        ["upscale", "-i", str(sample), "-o", "out.png", "-s", "2", "--device", "auto"],
        ["evaluate", "-d", set5, "-s", "2", "--no-bicubic"],
        ["report", "-d", set5, "-s", "2", "--crops", "1", "-o", "report.html"],
        ["convert", str(shared_path("weights", "official", "LapSRN_x2.mat")), "-o", "x2.safetensors"],
    ):
        done = _run_cli(command, tmp_path, block_torch=True)
        assert done.returncode == 0 and "torch imported: False" in done.stdout, (command, done.stderr)
    assert (tmp_path / "report.html").stat().st_size > 0 and (tmp_path / "x2.safetensors").stat().st_size > 0
    import importlib.util

    from lapsrn.cli import install_hint

    lacking = ", ".join(["torch", *(m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None)])
    for command, extra, needs in (
        (["train", "--steps", "1"], "torch", "torch"),
        (["export", "--onnx", "x.onnx"], "export", lacking),  # everything export lacks, at once
    ):
        done = _run_cli(command, tmp_path, block_torch=True)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0] == f"lapsrn: error: lapsrn {command[0]} needs {needs}: {install_hint(extra)}"
    done = _run_cli(["upscale", "-i", str(sample), "-o", "o.png", "--device", "cuda"], tmp_path, True)
    assert done.returncode == 1 and "needs PyTorch" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "options, message",
    [
        (["--device", "cuda"], "no CUDA device"),
        (["--device", "mps"], "Metal backend is not available"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--half"], "--half needs --device cuda"),
    ],
)
def test_missing_or_unknown_devices_are_one_line_errors(options, message, tmp_path, capsys):
    from lapsrn.cli import main

    sample = REPO / "src/lapsrn/assets/sample.png"
    assert main(["upscale", "-i", str(sample), "-o", str(tmp_path / "o.png"), "-s", "2", *options]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o.png").exists()


def test_torch_hub_gives_the_reference_network():
    net = torch.hub.load(str(REPO), "lapsrn_net", source="local", trust_repo=True)
    assert isinstance(net, MSLapSRN) and not net.training
    assert [o.shape[-1] for o in net(torch.zeros(1, 1, 5, 6))] == [12, 24, 48]
