"""Tiled inference equals whole-image inference; tiling turns on by itself under a memory budget."""

import numpy as np
import pytest
import torch

import lapsrn.tiling as tiling
from lapsrn import protocol as P
from lapsrn.api import Upscaler
from lapsrn.colour import super_resolve
from lapsrn.memory import feature_bytes
from lapsrn.models import MSLapSRN

from .conftest import smooth_image

# Tiles put the Winograd tiles (6x6 outputs) elsewhere, so the float32 rounding differs: about 1e-5 here.
# A seam from too little context is over 1e-3 (test_margin_is_needed).
SAME = 3e-5


def test_tiled_equals_whole_image_official_lapsrn(lapsrn_x4, rng):
    y = rng.random((100, 120))
    whole = Upscaler(lapsrn_x4).pyramid_y(y, 2)
    tiled = Upscaler(lapsrn_x4, tile=32).pyramid_y(y, 2)
    for a, b in zip(whole, tiled):
        assert np.abs(a - b).max() < SAME


def test_tiled_equals_whole_image_mslapsrn_three_levels(rng):
    torch.manual_seed(0)
    net = MSLapSRN(depth=3, recursions=2, levels=3).eval()
    y = rng.random((90, 70))
    whole = Upscaler(net).pyramid_y(y, 3)
    tiled = Upscaler(net, tile=25).pyramid_y(y, 3)
    assert max(np.abs(a - b).max() for a, b in zip(whole, tiled)) < SAME


def test_margin_is_needed(lapsrn_x4, rng, monkeypatch):
    """With too little overlap the seams show: the equality above is not trivial."""
    y = rng.random((100, 120))
    whole = Upscaler(lapsrn_x4).pyramid_y(y, 2)
    monkeypatch.setattr(tiling, "receptive_margin", lambda net, levels: 4)
    tiled = Upscaler(lapsrn_x4, tile=32).pyramid_y(y, 2)
    assert np.abs(whole[-1] - tiled[-1]).max() > 1e-3


def test_tiling_turns_on_under_memory_budget(rng, monkeypatch):
    torch.manual_seed(0)
    net = MSLapSRN(depth=2, recursions=1, levels=2).eval()
    img = smooth_image(rng, 200, 160)
    budget = tiling.CHUNK_OVERHEAD + (feature_bytes(200, 160, 2) - tiling.CHUNK_OVERHEAD) // 2
    up = Upscaler(net, max_memory=budget)
    assert up.tile_size(200, 160, 2) is not None
    calls = []
    real_run = Upscaler._run
    monkeypatch.setattr(Upscaler, "_run", lambda self, y, *a, **k: calls.append(y.shape) or real_run(self, y, *a, **k))
    tiled = super_resolve(up, img, 4)
    assert len(calls) > 1 and all(h * w < 200 * 160 for h, w in calls)
    whole = super_resolve(Upscaler(net), img, 4)
    assert np.abs(tiled - whole).max() < SAME


def test_last_level_runs_in_bands_within_the_budget(rng, monkeypatch):
    """A budget the whole image fits only with its last level in bands: one pass, no tiles, the same result."""
    from lapsrn.engine import Network

    torch.manual_seed(0)
    net = MSLapSRN(depth=2, recursions=1, levels=2).eval()
    y = rng.random((200, 160)).astype(np.float32)
    up = Upscaler(net, max_memory=feature_bytes(200, 160, 2) + tiling.output_bytes(200, 160, 2, last_only=True))
    assert up.tile_size(200, 160, 2, tiling.output_bytes(200, 160, 2, last_only=True)) is None
    bands = []
    real = Network._band_features
    monkeypatch.setattr(Network, "_band_features", lambda self, *a: bands.append(a[2:4]) or real(self, *a))
    banded = up.pyramid_y(y, 2, last_only=True)[0]
    assert len(bands) >= 3 and bands[0][0] == 0 and bands[-1][1] == 400  # the last level's 400 rows
    monkeypatch.setattr(Network, "_band_features", real)
    assert np.abs(banded - Upscaler(net).pyramid_y(y, 2, last_only=True)[0]).max() < SAME


def test_a_tile_the_user_sized_runs_whole(rng, monkeypatch):
    """--tile N: each tile in one pass, whatever the budget (no thin bands from a budget it overrides)."""
    from lapsrn.engine import Network

    net = MSLapSRN(depth=2, recursions=1, levels=2).eval()
    bands = []
    real = Network._band_features
    monkeypatch.setattr(Network, "_band_features", lambda self, *a: bands.append(1) or real(self, *a))
    Upscaler(net, tile=40, max_memory=1 << 20).pyramid_y(rng.random((100, 120)).astype(np.float32), 2)
    assert not bands


@pytest.mark.parametrize(("h", "w", "layout"), [(384, 512, "square"), (2000, 120, "band")])
def test_automatic_tiles_are_the_layout_that_computes_less(h, w, layout):
    """Bands or squares, whichever runs the network over fewer pixels, margins included; both fit the budget."""
    net = MSLapSRN(depth=2, recursions=1, levels=2).eval()
    up = Upscaler(net, max_memory=tiling.CHUNK_OVERHEAD + (feature_bytes(h, w, 2) - tiling.CHUNK_OVERHEAD) // 4)
    margin = tiling.receptive_margin(up.spec, 2)
    band, square = up.tile_candidates(h, w, 2)
    tile = up.tile_size(h, w, 2)
    assert tile == {"band": band, "square": square}[layout]
    cost = {t: tiling.computed_pixels(h, w, t, margin) for t in (band, square)}
    assert cost[tile] == min(cost.values())
    per_pixel = feature_bytes(1, 1, 2) - tiling.CHUNK_OVERHEAD
    assert (band[0] + 2 * margin) * w * per_pixel + tiling.CHUNK_OVERHEAD <= up.max_memory
    assert (square[0] + 2 * margin) ** 2 * per_pixel + tiling.CHUNK_OVERHEAD <= up.max_memory


def test_too_small_budget_is_a_clear_error():
    net = MSLapSRN(depth=1, recursions=1)
    with pytest.raises(ValueError, match="too small"):
        Upscaler(net, max_memory=1000).tile_size(500, 500, 3)


@pytest.mark.parametrize("gray", [False, True])
def test_compose_bands_run_on_every_thread(rng, monkeypatch, gray):
    """With two threads the colour is composed as two bands at once, equal to one thread's single band."""
    from lapsrn import colour as imaging
    from lapsrn import engine

    h, w = 61, 37
    img, y = smooth_image(rng, h, w), rng.random((4 * h, 4 * w))
    img = img[..., 0] if gray else img
    previous, real, bands, outs = engine.threads(), engine.map_threads, [], []
    monkeypatch.setattr(engine, "map_threads", lambda work, items: (bands.append(len(items)), real(work, items)))
    try:
        for threads in (1, 2):
            engine.set_threads(threads)
            for dtype in (np.float64, np.uint8):
                outs.append(np.empty((4 * h, 4 * w) if gray else (4 * h, 4 * w, 3), dtype))
                imaging._compose_rows(img, y, 0, h, 4, outs[-1])
    finally:
        engine.set_threads(previous)
    assert bands == [1, 1, 2, 2]
    assert np.abs(outs[0] - outs[2]).max() < 1e-12 and np.array_equal(outs[1], outs[3])
    monkeypatch.setattr(imaging, "BAND_PIXELS", 8 * 4 * w * 4)  # room for one 8-row band at a time
    engine.set_threads(2)
    try:
        bands.clear()
        imaging._compose_rows(img, y, 0, h, 4, outs[1])
    finally:
        engine.set_threads(previous)
    assert bands == [1] * 8 and np.array_equal(outs[1], outs[3])  # 61 rows: 8 bands, one at a time


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("gray", [False, True])
def test_banded_compose_equals_one_piece(rng, monkeypatch, scale, gray):
    """Colour is composed in horizontal bands straight into uint8; the bands must not show."""
    from lapsrn import colour as imaging

    torch.manual_seed(0)
    net = MSLapSRN(depth=1, recursions=1, levels=2).eval()
    img = smooth_image(rng, 53, 31)
    img = img[..., 0] if gray else img
    whole = super_resolve(Upscaler(net), img, scale)
    monkeypatch.setattr(imaging, "BAND_PIXELS", 31 * scale * 8)  # bands of 8 LR rows: 7 bands
    banded = super_resolve(Upscaler(net), img, scale)
    assert np.abs(banded - whole).max() < 1e-12
    as_u8 = super_resolve(Upscaler(net), img, scale, np.uint8)
    assert as_u8.dtype == np.uint8 and np.array_equal(as_u8, P.im2uint8(whole))


def test_bands_cover_the_rows_once_and_read_their_margins_within_the_image():
    """The one band helper: delivered rows tile [start, end) exactly; reads add the margin, clamped to the image;
    equal bands are as few as the size allows, each as short as that count allows."""
    from lapsrn.bands import bands, read_rows

    for length, size, margin, equal, start, end in [
        (10, 3, 2, False, 0, None),
        (10, 3, 2, True, 0, None),
        (100, 7, 5, True, 0, None),
        (50, 8, 6, False, 13, 41),
        (1, 5, 3, True, 0, None),
    ]:
        cut = bands(length, size, margin, equal, start, end)
        stop = length if end is None else end
        rows = [r for b in cut for r in range(b.start, b.stop)]
        assert rows == list(range(start, stop))
        for b in cut:
            assert b.read_start == max(b.start - margin, 0) and b.read_stop == min(b.stop + margin, length)
            assert b.offset == b.start - b.read_start and b.stop - b.start <= size
        if equal:
            assert len(cut) == -(-(stop - start) // size)
            sizes = [b.stop - b.start for b in cut]
            assert len(set(sizes[:-1])) <= 1 and sizes[-1] <= sizes[0] and sizes[0] * (len(cut) - 1) < stop - start
        assert read_rows(length, size, margin, equal) == sum(
            b.read_stop - b.read_start for b in bands(length, size, margin, equal)
        )


@pytest.mark.parametrize(("budget", "steps"), [(None, 2), (40 << 20, 6)])
def test_progress_rises_through_every_level_and_tile(rng, budget, steps):
    """The rows reported climb steadily from the first level on (a level weighs its pixels), within rows of
    tiles too, and end at the plane's height: a bar does not wait silently for the last level."""
    torch.manual_seed(0)
    net = MSLapSRN(depth=2, recursions=1, levels=2).eval()
    seen = []
    up = Upscaler(net, progress=lambda done, rows: seen.append((done, rows)))
    if budget:
        up.max_memory = tiling.CHUNK_OVERHEAD + (feature_bytes(300, 200, 2) - tiling.CHUNK_OVERHEAD) // 6
        assert up.tile_size(300, 200, 2, tiling.output_bytes(300, 200, 2, last_only=True)) is not None
    up.pyramid_y(rng.random((300, 200)).astype(np.float32), 2, last_only=True)
    done = [d for d, rows in seen]
    assert all(rows == 300 for _, rows in seen) and done[-1] == 300
    assert done == sorted(done) and len(set(done)) >= steps
    assert 0 < done[0] <= 300 // 4  # the first level is a fifth of an x4 pass (of a tile's): reported on its own
