"""The memory model: what an upscale holds, in bytes, so that one budget (``--max-memory``) can size its pieces.

Every estimate the tiler, the colour composition, the folder runner and the
file checks make is here, beside the constants it rests on, so that a change to
what one stage keeps is made once. The engine's own working sizes (scratch per
thread, recycled buffers, LapSRN's upsampled band) live with the engine, which
runs without this package; ``CHUNK_OVERHEAD`` is their sum as this model counts it.
"""

from __future__ import annotations

import math
import os

DEFAULT_MAX_MEMORY = 672 << 20  # bytes for the input, output and feature maps: bands or tiles keep within it
BYTES_PER_FEATURE = 3 * 64 * 4  # three live float32 maps of 64 channels: the most the engine keeps at a level
CHUNK_OVERHEAD = 64 << 20  # scratch, recycled buffers and LapSRN's last upsampled features (engine.network.BAND_BYTES)
BYTES_PER_INPUT_PIXEL = 64  # decoded 8/16-bit samples + float64 RGB + a working copy
BYTES_PER_OUTPUT_PIXEL = 16  # network Y (float32), the output samples and the encoder's copy; float64 only per band
BAND_PIXELS = 1 << 20  # output pixels composed at once, all threads together: float64 temporaries ~50 MB
WRITE_BEHIND_BYTES = 64 << 20  # a folder's outputs up to this size are written while the next image is upscaled


def memory_limit() -> int:
    """Half of this machine's physical memory: what one image may use outside the network."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def output_bytes(h: int, w: int, levels: int, last_only: bool = False) -> int:
    """Bytes of the float32 output planes a pass returns for an h x w input (all levels or the last)."""
    first = levels if last_only else 1
    return sum(h * w * 4**l * 4 for l in range(first, levels + 1))


def feature_bytes(h: int, w: int, levels: int, banded: bool = True) -> int:
    """Memory one forward pass needs on an h x w LR input; tiles are sized by it.

    A level holds at most three 64-channel maps at its size. ``banded`` (the engine, two levels or
    more): the last level runs in bands of rows (``engine.Network``), so only the levels before it
    exist whole, the largest at a quarter of the last level's size; a third more than that largest
    level's maps leaves the bands room beside the embedding they read (``band_bytes``). Else every
    level's maps are counted whole. Both count the pass's output planes twice (``Tiler.bands``
    copies a tile's into its row of tiles).
    """
    planes = 2 * output_bytes(h, w, levels) + CHUNK_OVERHEAD
    if banded and levels >= 2:
        return h * w * 4 ** (levels - 2) * BYTES_PER_FEATURE * 4 // 3 + planes
    return int(sum(h * w * 4**l for l in range(levels)) * BYTES_PER_FEATURE) + planes


def band_bytes(h: int, w: int, levels: int, budget: int) -> int:
    """What the last level's bands may take of ``budget`` (bytes for an h x w LR input's pass): all but the
    output planes and the previous level's embedding, which they read (64 channels at a quarter of their size)."""
    return budget - 2 * output_bytes(h, w, levels) - CHUNK_OVERHEAD - h * w * 4 ** (levels - 2) * 64 * 4


def format_size(n: int) -> str:
    """Bytes as the --max-memory option reads them (512K, 300M, 1.14G): three digits, rounded up to be enough."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            decimals = max(3 - len(str(int(value))), 0)
            text = f"{math.ceil(value * 10**decimals - 1e-9) / 10**decimals:.{decimals}f}"
            return (text.rstrip("0").rstrip(".") if "." in text else text) + unit
    return f"{n} bytes"
