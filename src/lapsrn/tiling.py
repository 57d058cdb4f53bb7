"""Running a network on a luminance plane: the CPU engine or PyTorch on a device, in bands or tiles under a budget.

The network is the CPU engine (``lapsrn.engine``, no torch) or, on a GPU, the
PyTorch reference (``torch_network.TorchNetwork``); both take a float32
luminance plane and return the pyramid's planes, so the tiling here, and the
colour handling in ``colour``, are the same for both.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .bands import bands, read_rows
from .memory import CHUNK_OVERHEAD, DEFAULT_MAX_MEMORY, band_bytes, feature_bytes, format_size, output_bytes
from .weights import ModelSpec


class PyramidNetwork(Protocol):
    """What an Upscaler runs: an (h, w) float32 LR luminance plane -> [x2, x4, ...] planes (or only the last)."""

    def __call__(self, y: np.ndarray, levels: int, last_only: bool = False) -> list[np.ndarray]: ...


def receptive_margin(spec: ModelSpec, levels: int) -> int:
    """LR pixels of context a tile needs so its interior equals the whole-image result.

    Each 3x3 conv at level l (resolution 2^l) widens the field by 2^-l LR px;
    the transposed convs add about one pixel of their level. Rounded up, plus two.
    """
    if spec.arch == "OneStep":  # every conv at the LR size, the upsamplers at the end
        return spec.depth * spec.levels + 2 * levels + 4
    convs = spec.depth if spec.arch == "LapSRN" else spec.depth * spec.recursions
    reach = 1.0  # input conv
    for l in range(levels):
        reach += (convs + 1) / 2**l + 2 / 2**l  # convs at this level, upsampler, residual + image branch
    return int(math.ceil(reach)) + 2


def computed_pixels(h: int, w: int, tile: tuple[int, int], margin: int) -> int:
    """LR pixels the network runs over to cover an h x w image in such tiles, each with its margin of context
    (clamped at the image's edges, as ``Tiler.bands`` runs them)."""
    return read_rows(h, tile[0], margin, equal=True) * read_rows(w, tile[1], margin, equal=True)


def _is_torch_module(obj: object) -> bool:
    """Whether obj is a torch nn.Module, without importing torch when nobody else has."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _nvidia_present() -> bool:
    """A cheap look for an NVIDIA driver, so that ``--device auto`` imports torch only where CUDA may run."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when PyTorch is installed and sees an NVIDIA GPU, else 'cpu' (the engine).

    Any other value is checked: 'cpu', 'cuda', 'cuda:N' or 'mps'; a GPU device
    needs PyTorch and the device itself, else one line says what is missing.
    """
    import importlib.util

    if device == "auto":
        if importlib.util.find_spec("torch") is None or not _nvidia_present():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if not (device in ("cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ValueError(f"unknown device {device!r} (choose auto, cpu, cuda, cuda:N or mps)")
    if importlib.util.find_spec("torch") is None:
        raise ValueError(f"--device {device} needs PyTorch: pip install 'lapsrn[torch]'")
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available to PyTorch")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: Apple's Metal backend is not available to PyTorch here")
    return device


@dataclass
class Tiler:
    """A network and how to run it on a luminance plane: tile size, memory budget, threads.

    ``net`` is the CPU engine or a ``TorchNetwork``; a PyTorch reference module
    may be given instead and is converted (its weights copied, the module left
    untouched): to the engine on ``device='cpu'``, else run by PyTorch there.
    """

    net: PyramidNetwork
    spec: ModelSpec | None = None  # required with an engine network; taken from a torch module
    tile: int | None = None  # LR tile side; None = automatic from max_memory
    max_memory: int = DEFAULT_MAX_MEMORY  # bytes for feature maps + output planes; tiling keeps within it
    device: str = "cpu"
    half: bool = False  # float16 on CUDA
    threads: int | None = field(default=None, repr=False)
    progress: Callable[[int, int], None] | None = field(default=None, repr=False)  # (LR rows done, rows) of a plane

    def __post_init__(self) -> None:
        if _is_torch_module(self.net):
            from .weights import spec_of

            module, self.spec = self.net, spec_of(self.net)
            state = {k: v.detach().cpu().float().numpy() for k, v in module.state_dict().items()}
            self.net = network_for(self.spec, state, self.device, self.half)
        if self.spec is None:
            raise ValueError("an Upscaler needs the model's spec with an engine network")
        if self.half and not self.device.startswith("cuda"):
            raise ValueError("half precision runs on CUDA only (--half needs --device cuda)")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")

    @classmethod
    def from_weights(
        cls, spec: ModelSpec, state: dict[str, np.ndarray], device: str = "cpu", half: bool = False, **options
    ) -> Tiler:
        """The engine (device 'cpu') or the PyTorch reference on a GPU, for these weights."""
        return cls(network_for(spec, state, device, half), spec, device=device, half=half, **options)

    @contextmanager
    def limits(self) -> Iterator[None]:
        """This upscaler's ``threads`` for the work inside (engine bands, BLAS, PyTorch), restored after.

        Per call, not per process: another Upscaler, or the rest of the program, keeps its own. BLAS
        libraries have one setting per process, so it is set for the call's duration only; the engine's
        count is per thread of the caller (``engine.using_threads``).
        """
        if not self.threads:
            yield
            return
        from .engine import blas_threads, using_threads

        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        with using_threads(self.threads), blas_threads(self.threads):
            if torch is not None:
                torch.set_num_threads(self.threads)
            try:
                yield
            finally:
                if torch is not None:
                    torch.set_num_threads(before)

    @property
    def max_levels(self) -> int | None:
        """Levels this network can run; None when it shares weights across levels (MS-LapSRN)."""
        return self.spec.max_levels

    def tile_size(self, h: int, w: int, levels: int, reserved: int = 0, row_bytes: int = 0) -> tuple[int, int] | None:
        """LR tile (rows, columns) to use, or None to run the whole image at once.

        ``reserved``: bytes of the budget already taken (the input, the output
        planes), so feature maps and outputs together stay within ``max_memory``;
        ``row_bytes``: what the caller keeps for each LR row of a band of tiles
        while it is consumed (an output strip). Automatic tiles are full-width
        bands or squares (``tile_candidates``), whichever computes fewer pixels
        in all, margins of context included: a band repeats its top and bottom
        margins, a square all four sides' (docs/results/speed_candidates.md, "Tiling").
        """
        if self.tile:
            return (self.tile, self.tile) if self.tile < max(h, w) else None
        whole = feature_bytes(h, w, levels, self._banded(levels)) + h * row_bytes
        if whole <= max(self.max_memory - reserved, 0):
            return None
        margin = receptive_margin(self.spec, levels)
        fitting = [t for t in self.tile_candidates(h, w, levels, reserved, row_bytes) if min(t) >= 16]
        if not fitting:
            raise ValueError(
                f"--max-memory {format_size(self.max_memory)} is too small for x{2**levels} of a {w}x{h} image: "
                f"give a larger one, at least {format_size(self.least_memory(w, levels, reserved, row_bytes))}"
            )
        return min(fitting, key=lambda t: computed_pixels(h, w, t, margin))

    def least_memory(self, w: int, levels: int, reserved: int = 0, row_bytes: int = 0) -> int:
        """The smallest budget ``tile_size`` accepts for an image w wide: 16 x 16 tiles."""
        per_pixel = feature_bytes(1, 1, levels, self._banded(levels)) - CHUNK_OVERHEAD
        row = output_bytes(1, w, levels) + row_bytes
        return reserved + CHUNK_OVERHEAD + per_pixel * (16 + 2 * receptive_margin(self.spec, levels)) ** 2 + 16 * row

    def tile_candidates(
        self, h: int, w: int, levels: int, reserved: int = 0, row_bytes: int = 0
    ) -> list[tuple[int, int]]:
        """The two tile shapes whose feature maps, margins included, fit the budget: a full-width band, a square.

        A band of squares also holds its row of outputs at full width (``bands`` stitches them) and
        ``row_bytes`` a row; a full-width band's own outputs are its tile's, already in the per-pixel count.
        """
        margin = receptive_margin(self.spec, levels)
        per_pixel = feature_bytes(1, 1, levels, self._banded(levels)) - CHUNK_OVERHEAD
        budget = max(self.max_memory - reserved - CHUNK_OVERHEAD, 0)
        band = int((budget - 2 * margin * w * per_pixel) / (w * per_pixel + row_bytes))
        # a square of side s: (s + 2m)^2 per_pixel + s (row) <= budget, solved for s
        row = output_bytes(1, w, levels) + row_bytes
        b, c = 4 * margin * per_pixel + row, 4 * margin**2 * per_pixel - budget
        side = int((-b + math.sqrt(max(b * b - 4 * per_pixel * c, 0))) / (2 * per_pixel)) if c < 0 else 0
        return [(band, w), (side, side)]

    def _banded(self, levels: int) -> bool:
        """Whether the network runs the last of these levels in bands of rows (the engine does, from x4)."""
        from .engine import Network

        return levels >= 2 and isinstance(self.net, Network)

    def _run(
        self,
        y: np.ndarray,
        levels: int,
        last_only: bool,
        reserved: int,
        progress: Callable[[float], None] | None = None,
    ) -> list[np.ndarray]:
        """Whole-plane forward pass, the last level's bands within the budget; a non-finite result is an error.

        ``progress(fraction)``: how much of this pass is done, after each level and band (the engine's report).
        """
        from .engine import Network
        from .engine.winograd import REUSE_BYTES, keep_freed_memory

        y = np.ascontiguousarray(y, dtype=np.float32)
        keep_freed_memory(y.size * 4 ** (levels - 1) * 64 * 4 <= REUSE_BYTES)  # the largest map's bytes
        options = {}
        if isinstance(self.net, Network):
            options["progress"] = (lambda done, total: progress(done / total)) if progress else None
            if self._banded(levels) and not self.tile:  # a tile the user sized runs whole, as asked
                options["band_bytes"] = band_bytes(*y.shape, levels, self.max_memory - reserved)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, as one error
            outs = self.net(y, levels, last_only, **options)
        for out in outs:
            if not np.isfinite(out).all():
                raise ValueError("the network's output is not finite (NaN or infinity): the weights are unusable")
        return outs

    def bands(
        self, y: np.ndarray, levels: int, last_only: bool = False, reserved: int | None = None, row_bytes: int = 0
    ) -> Iterator[tuple[int, int, list[np.ndarray]]]:
        """(r0, r1, outputs) for consecutive bands of LR rows [r0, r1): every level's output rows, or the last's.

        One band is the whole image when it fits the memory budget; else a band is
        a row of tiles, each run with its margin of context and cropped, so the
        stitched result equals the whole-image one. ``reserved``: bytes of the
        budget the caller already holds (default: whole output planes);
        ``row_bytes``: what it keeps for each LR row of a band (``tile_size``).
        """
        if self.max_levels is not None and levels > self.max_levels:
            raise ValueError(
                f"this LapSRN goes up to x{2**self.max_levels}; for x{2**levels} use one trained for it (the "
                f"authors' LapSRN_x{2**levels}.mat) or an MS-LapSRN model, such as the bundled default"
            )
        h, w = y.shape
        first = levels if last_only else 1
        if reserved is None:
            reserved = output_bytes(h, w, levels, last_only)
        tile = self.tile_size(h, w, levels, reserved, row_bytes)
        report = self.progress
        if tile is None:
            whole = (lambda f: report(int(f * h), h)) if report else None
            yield 0, h, self._run(y, levels, last_only, reserved + h * row_bytes, whole)
            if report:
                report(h, h)
            return
        m = receptive_margin(self.spec, levels)
        # what a band of tiles holds beside each tile's pass: the caller's rows and, for squares, the row of outputs
        per_row = row_bytes + (output_bytes(1, w, levels, last_only) if tile[1] < w else 0)
        for row in bands(h, tile[0], m, equal=True):
            outs = [np.empty(((row.stop - row.start) * 2**l, w * 2**l), np.float32) for l in range(first, levels + 1)]
            cols = bands(w, tile[1], m, equal=True)
            for k, col in enumerate(cols):
                piece = y[row.read_start : row.read_stop, col.read_start : col.read_stop]
                done = (
                    (lambda f, k=k: report(row.start + int((row.stop - row.start) * (k + f) / len(cols)), h))
                    if report
                    else None
                )
                part = self._run(piece, levels, last_only, reserved + (row.stop - row.start) * per_row, done)
                for l, (out, res) in enumerate(zip(outs, part), start=first):
                    f = 2**l
                    r0, c0 = row.offset * f, col.offset * f
                    out[:, col.start * f : col.stop * f] = res[
                        r0 : r0 + out.shape[0], c0 : c0 + (col.stop - col.start) * f
                    ]
            yield row.start, row.stop, outs
            del outs  # not alive beside the next row's
            if report:
                report(row.stop, h)

    def pyramid_y(self, y: np.ndarray, levels: int, last_only: bool = False) -> list[np.ndarray]:
        """Every level's output (or only the last) for one luminance plane, float32, tiled if needed."""
        parts = list(self.bands(y, levels, last_only))
        return [np.concatenate(p) if len(p) > 1 else p[0] for p in zip(*(outs for _, _, outs in parts))]


def network_for(
    spec: ModelSpec, state: dict[str, np.ndarray], device: str = "cpu", half: bool = False
) -> PyramidNetwork:
    """The CPU engine for device 'cpu', else the PyTorch reference on that device.

    The engine runs the released architectures; the papers' ablation variants
    run on the reference module, on the CPU too.
    """
    if not spec.released:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise ValueError(f"this {spec.arch} ablation variant runs on PyTorch: pip install 'lapsrn[torch]'")
    elif device == "cpu":
        from . import engine

        return engine.build(spec.arch, state, spec.depth, spec.levels, spec.recursions, spec.skip)
    from .torch_network import TorchNetwork

    return TorchNetwork.from_weights(spec, state, device, half)
