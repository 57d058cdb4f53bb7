"""Rows cut into bands that read context around them: the one way lapsrn splits an image to bound memory.

A band delivers rows [start, stop) and reads rows [read_start, read_stop): its own and up to
``margin`` more either side, clamped at the image's edges. When ``margin`` covers how far the
computation reaches (a network's receptive field, a bicubic kernel's taps), each band's delivered
rows equal the whole image's, so stitching them gives the whole-image result with a band's memory.
The tiler (rows and columns of tiles), the engine's last level, the colour composition and the
app's bicubic all cut with ``bands``.
"""

from __future__ import annotations

from typing import NamedTuple


class Band(NamedTuple):
    """Rows a band delivers, [start, stop), and the rows it reads for them, [read_start, read_stop)."""

    start: int
    stop: int
    read_start: int
    read_stop: int

    @property
    def offset(self) -> int:
        """Where the delivered rows begin in what the band read."""
        return self.start - self.read_start


def bands(
    length: int, size: int, margin: int = 0, equal: bool = False, start: int = 0, end: int | None = None
) -> list[Band]:
    """Bands of at most ``size`` rows covering rows [start, end) of ``length`` rows (all of them by default),
    each reading ``margin`` rows either side, within the ``length`` rows.

    ``equal``: as few bands as ``size`` allows, each as short as that count allows (all of one size but
    the last, which is no longer), so no thin last band pays a whole margin for a few rows; else every
    band has ``size`` rows but the last.
    """
    end = length if end is None else end
    size = max(1, size)
    if equal and end > start:
        count = -(-(end - start) // size)
        size = -(-(end - start) // count)
    cut = [(a, min(a + size, end)) for a in range(start, end, size)]
    return [Band(a, b, max(a - margin, 0), min(b + margin, length)) for a, b in cut]


def read_rows(length: int, size: int, margin: int, equal: bool = False) -> int:
    """Rows read in all by ``bands(length, size, margin, equal)``: the work its margins add is the excess."""
    return sum(b.read_stop - b.read_start for b in bands(length, size, margin, equal))
