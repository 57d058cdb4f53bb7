"""Which CPU speed choices pay: the authors' LapSRN x4 on one 512x384 LR image, and the stages around it.

    python scripts/speed_candidates.py            # writes docs/results/speed_candidates.md

Network rows (LR luminance in, x2 and x4 planes out), median of 3 runs after a warm-up, in this
process with the same threads: the PyTorch reference (models.py), ONNX Runtime on the exported
graph, the engine as shipped, and the engine with one of its choices undone. Then the stages
around the network for the same image: chroma upscaling and PNG encoding, each shipped choice
against the one it replaced; one 3x3 conv by F(6x6, 3x3) (shipped) and by F(4x4, 3x3) (the engine
before, ``winograd_f4.py``); the 3x3 conv's input transform with its arrays declared apart or
not, in bands of an odd number of tiles or of 96; start-up (the kernels loaded as machine code, through Numba, and
``import cv2``, in fresh processes), colour
composition on every thread or one, and building the composed residual's weights; tiling layouts
under the same memory budget; and a per-operation profile of the shipped engine. The engine's
outputs are tested equal to the reference (tests/test_engine.py); every row here computes the
same numbers.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

OFFICIAL = Path("../shared/weights/official/LapSRN_x4.mat")


def timed(fn, repeats: int = 3) -> float:
    """Median seconds of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def onnx_runner(weights: Path, y: np.ndarray):
    """ONNX Runtime on our exported graph (needs the [export] extra), or None."""
    try:
        import onnxruntime as ort

        from lapsrn.export import export_onnx
        from lapsrn.weights import load
    except ImportError:
        return None
    path = Path(tempfile.mkdtemp()) / "lapsrn.onnx"
    export_onnx(load(weights)[0], 2, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"lr": y[None, None]})


def network_rows(weights: Path, y: np.ndarray, threads: int) -> list[tuple[str, float]]:
    """The network alone, by every candidate."""
    import torch
    from threadpoolctl import threadpool_limits

    from lapsrn import engine
    from lapsrn.engine import winograd as W
    from lapsrn.weights import load, read

    torch.set_num_threads(threads)
    spec, state = read(weights)
    net = engine.build(spec.arch, state, spec.depth, spec.levels)
    module = load(weights)[0]
    x = torch.from_numpy(y)[None, None]

    def reference() -> None:
        with torch.inference_mode():
            module(x, 2)

    rows = [("PyTorch reference (models.py), plain modules", timed(reference))]
    onnx = onnx_runner(weights, y)
    if onnx is not None:
        import onnxruntime

        rows.append((f"ONNX Runtime {onnxruntime.__version__}, exported graph", timed(onnx)))
    engine.set_threads(threads)
    rows.append(
        (
            "**engine (shipped)**: bands taken in turn by the caller and pool threads, single-threaded BLAS",
            timed(lambda: net(y, 2)),
        )
    )

    from lapsrn.engine import network as N

    real_blas = N.single_threaded_blas

    def serial_bands() -> None:  # one pool thread, BLAS threaded: the two take turns on each band
        engine.set_threads(1)
        N.single_threaded_blas = lambda: threadpool_limits(threads, user_api="blas")
        try:
            net(y, 2)
        finally:
            N.single_threaded_blas = real_blas
            engine.set_threads(threads)

    rows.append(("engine, bands one at a time with multi-threaded BLAS", timed(serial_bands)))

    from concurrent.futures import ThreadPoolExecutor

    real_map, pool = W.map_threads, ThreadPoolExecutor(threads)

    def future_per_band(work, items) -> None:  # the engine before: the caller waits on a future per band
        for _ in pool.map(work, items):
            pass

    W.map_threads = future_per_band
    try:
        rows.append(("engine, a pool future per band, the caller waiting", timed(lambda: net(y, 2))))
    finally:
        W.map_threads = real_map
        pool.shutdown()

    real_recycle = W.FeatureMap.recycle
    W.FeatureMap.recycle = lambda self: None
    rows.append(("engine without recycled buffers (a fresh array for every map)", timed(lambda: net(y, 2))))
    W.FeatureMap.recycle = real_recycle
    return rows


def transform_rows() -> list[tuple[str, float]]:
    """The 3x3 conv's input transform on one thread, a 256x256 map of 64 channels in bands, called through
    Numba: as compiled (arrays declared apart), and without that declaration; bands of an odd number of
    tiles (as shipped: 95 here), and of 96, a multiple of 16."""
    from numba import njit

    from lapsrn.engine import kernels
    from lapsrn.engine.winograd import padded

    xp = np.random.default_rng(0).standard_normal((padded(256), padded(256), 64), dtype=np.float32)
    u, slope, tw = np.empty((8, 8, 64), np.float32), np.float32(0.2), -(-256 // 6)
    tiles = tw * tw
    checked = njit(nogil=True, fastmath=True, error_model="numpy")(kernels.input_transform.py_func)

    def run(kernel, band: int) -> float:
        v = np.empty((64, band, 64), np.float32)
        return timed(lambda: [kernel(xp, v, u, t, min(band, tiles - t), tw, slope) for t in range(0, tiles, band)], 9)

    return [
        ("arrays declared apart (noalias), bands of 95 tiles (shipped)", run(kernels.input_transform, 95)),
        ("arrays declared apart, bands of 96 tiles", run(kernels.input_transform, 96)),
        ("run-time overlap checks (no noalias), bands of 95 tiles", run(checked, 95)),
        ("run-time overlap checks, bands of 96 tiles", run(checked, 96)),
    ]


def tile_rows() -> list[tuple[str, float]]:
    """One 64 -> 64 3x3 conv (LeakyReLU after) of a 264x264 map on one thread, in bands, called through Numba:
    the shipped F(6x6, 3x3) against F(4x4, 3x3) (``winograd_f4.py``, the engine before), and their products alone."""
    import winograd_f4 as f4

    from lapsrn.engine import kernels
    from lapsrn.engine import winograd as W

    rng = np.random.default_rng(0)
    size, c, slope = 264, 64, np.float32(0.2)
    w = rng.standard_normal((c, c, 3, 3)) * 0.06
    xp = rng.standard_normal((W.padded(size), W.padded(size), c), dtype=np.float32)
    out, bias, skip = np.empty_like(xp), np.zeros(c, np.float32), np.zeros((1, 1, 1), np.float32)
    variants = (
        ("F(6x6, 3x3) (shipped), bands of 95 tiles", 6, 95, kernels, W.Conv.from_weights(w, None).u),
        ("F(4x4, 3x3), bands of 187 tiles", 4, 187, f4, f4.weights(w)),
    )
    rows = []
    for name, tile, band, k, u in variants:
        window, tw = tile + 2, size // tile
        tiles, positions = tw * tw, (tile + 2) ** 2
        v_flat, m_flat = np.empty(positions * band * c, np.float32), np.empty(positions * band * c, np.float32)
        work = np.empty((window, window, c), np.float32), np.empty((tile, window, c), np.float32)
        o = np.empty((tile, c), np.float32)

        def conv(products_only: bool) -> None:
            for first in range(0, tiles, band):
                n = min(band, tiles - first)
                v, m = (a[: positions * n * c].reshape(positions, n, c) for a in (v_flat, m_flat))
                if not products_only:
                    k.input_transform(xp, v, work[0], first, n, tw, np.float32(1))
                np.matmul(v, u, out=m)
                if not products_only:
                    k.output_transform(m, bias, out, skip, False, work[1], o, first, n, tw, size, size, slope)

        with W.single_threaded_blas():
            rows.append((f"{name}: the conv", timed(lambda: conv(False), 9)))
            rows.append((f"{name}: its products alone (BLAS)", timed(lambda: conv(True), 9)))
    return rows


def composition_rows(y: np.ndarray) -> list[tuple[str, float]]:
    """The bundled default (MS-LapSRN): each level's residual by the composed conv, or the long way."""
    from dataclasses import replace

    from lapsrn import engine
    from lapsrn.weights import read

    spec, state = read("default")
    net = engine.build(spec.arch, state, spec.depth, recursions=spec.recursions, skip=spec.skip)
    composed = net.shared
    shipped = "upsampler and residual conv composed: one 3x3 conv of the embedding, 4 outputs (shipped)"
    rows = [(shipped, timed(lambda: net(y, 2)))]
    net.shared = replace(composed, composed=None)
    try:
        rows.append(("upsampler, then the residual conv (the last level in bands)", timed(lambda: net(y, 2))))
    finally:
        net.shared = composed
    return rows


def stage_rows(y: np.ndarray) -> list[tuple[str, float]]:
    """Chroma upscaling and PNG encoding of the x4 result, shipped choice against the one it replaced."""
    from PIL import Image

    from lapsrn import protocol as P

    ycc = np.random.default_rng(0).random((*y.shape, 3))
    out = (np.random.default_rng(1).random((4 * y.shape[0], 4 * y.shape[1], 3)) * 255).astype(np.uint8)
    png = Image.fromarray(out)

    def encode(level: int) -> None:
        png.save(io.BytesIO(), format="PNG", compress_level=level)

    return [
        ("chroma: bicubic x4 of Cb and Cr only (shipped)", timed(lambda: P.imresize(ycc[..., 1:], 4))),
        ("chroma: bicubic x4 of Y, Cb and Cr, then Y overwritten", timed(lambda: P.imresize(ycc, 4))),
        ("PNG encode, zlib level 1 (shipped default; OpenCV's too)", timed(lambda: encode(1))),
        ("PNG encode, zlib level 6 (Pillow's default)", timed(lambda: encode(6))),
    ]


STARTUP = """
import time
import numpy as np
start = time.perf_counter()
from lapsrn.engine import winograd as W
x = W.FeatureMap.from_array(np.ones((8, 8, 64), np.float32))
W.conv3x3(x, W.Conv.from_weights(np.ones((64, 64, 3, 3)), np.zeros(64)))
print(time.perf_counter() - start)
"""

NUMBA_START = """
import time
import numpy as np
start = time.perf_counter()
from numba import njit
from lapsrn.engine import kernels
image_upsample = njit(nogil=True, fastmath=True, error_model="numpy", cache=True)(kernels.image_upsample.py_func)
image_upsample(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), np.empty((8, 8), np.float32))
print(time.perf_counter() - start)
"""


def _fresh(code: str, repeats: int = 3) -> float:
    """Median of what ``code`` prints (seconds it measured), each run in a fresh Python process."""
    import subprocess
    import sys

    return float(np.median([float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(repeats)]))


def startup_rows() -> list[tuple[str, float]]:
    """Start-up in fresh processes after NumPy: the engine's first conv with its kernels' machine code loaded
    by llvmlite (shipped), a kernel through Numba's own disk cache (the engine before), ``import cv2``."""
    _fresh(NUMBA_START, 1)  # Numba compiles it into its cache once
    rows = [
        ("kernels' machine code loaded by llvmlite, first conv run (shipped)", _fresh(STARTUP)),
        ("Numba imported, a kernel loaded from Numba's own cache and run (before)", _fresh(NUMBA_START)),
    ]
    try:
        import cv2  # noqa: F401
    except ImportError:
        return rows
    code = "import time, numpy\nstart = time.perf_counter()\nimport cv2\nprint(time.perf_counter() - start)"
    return [*rows, ("OpenCV's start: import cv2", _fresh(code))]


def colour_rows(y: np.ndarray) -> list[tuple[str, float]]:
    """Composing the x4 colour output from the network's Y and the LR's Cb/Cr: on every thread, on one."""
    from lapsrn import colour as imaging
    from lapsrn import engine

    rng = np.random.default_rng(0)
    h, w = y.shape
    rgb, big_y = (rng.random((h, w, 3)) * 255).astype(np.uint8), rng.random((4 * h, 4 * w))
    out = np.empty((4 * h, 4 * w, 3), np.uint8)
    previous = engine.threads()
    rows = []
    try:
        for threads, name in (
            (previous, f"colour composed in bands on {previous} threads (shipped)"),
            (1, "the same on 1 thread"),
        ):
            engine.set_threads(threads)
            rows.append((name, timed(lambda: imaging._compose_rows(rgb, big_y, 0, h, 4, out))))
    finally:
        engine.set_threads(previous)
    return rows


def weights_rows() -> list[tuple[str, float]]:
    """Building MS-LapSRN's composed residual conv from the upsampler and the residual conv, at every load."""
    from lapsrn.engine import network as N

    rng = np.random.default_rng(0)
    up_w, up_b, res_w = rng.random((64, 64, 3, 3)), rng.random(64), rng.random((1, 64, 3, 3))
    taps = N._phase_taps()
    return [
        (
            "composed residual's weights, pairwise einsum (shipped)",
            timed(lambda: N.compose_residual(up_w, up_b, res_w, None)),
        ),
        (
            "the same as one four-operand einsum",
            timed(lambda: np.einsum("ydtk,xeul,mtu,cmkl->yxcde", taps, taps, res_w[0], up_w)),
        ),
    ]


def tiling_rows(weights: Path, y: np.ndarray) -> list[tuple[str, float]]:
    """Tiles under one memory budget that forces about three of them: a full-width band against a square
    (``Upscaler.tile_candidates``), the one ``tile_size`` picks marked, with the reservation ``bands`` makes."""
    import lapsrn
    from lapsrn import memory

    up = lapsrn.load(weights, device="cpu")
    reserved = memory.output_bytes(*y.shape, 2, last_only=True)  # what bands() reserves by default
    features = memory.feature_bytes(*y.shape, 2) - memory.CHUNK_OVERHEAD
    up.max_memory = reserved + memory.CHUNK_OVERHEAD + features // 3
    picked = up.tile_size(*y.shape, 2, reserved)
    band, square = up.tile_candidates(*y.shape, 2, reserved)
    real = up.tile_size
    rows = []
    try:
        for name, tile in [(f"full-width bands of {band[0]} rows", band), (f"squares of {square[0]} px", square)]:
            up.tile_size = lambda *a, tile=tile, **k: tile
            name += " (picked)" if tile == picked else ""
            rows.append((name, timed(lambda: up.pyramid_y(y, 2, last_only=True))))
    finally:
        up.tile_size = real
    return rows


def profile(weights: Path, y: np.ndarray) -> list[tuple[str, float]]:
    """Seconds per operation of one shipped run, by wrapping the engine's functions."""
    from lapsrn import engine
    from lapsrn.engine import network as N  # the operations as the network calls them (not their inner calls)
    from lapsrn.weights import read

    spec, state = read(weights)
    net = engine.build(spec.arch, state, spec.depth, spec.levels)
    totals: dict[str, float] = defaultdict(float)
    names = {
        "conv3x3": "3x3 convs (F(6x6, 3x3)) outside the last level's bands",
        "upsample2x": "feature upsampler of the other levels (F(4x4, 2x2))",
        "add_upsample_residual": "last level: upsampler + residual conv in bands",
        "image_upsample": "image branch (4x4 transposed conv, direct)",
    }
    real = {n: getattr(N, n) for n in names}

    def wrap(name):
        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            out = real[name](*args, **kwargs)
            totals[names[name]] += time.perf_counter() - start
            return out

        return timed_call

    net(y, 2)
    for n in names:
        setattr(N, n, wrap(n))
    start = time.perf_counter()
    net(y, 2)
    whole = time.perf_counter() - start
    for n, f in real.items():
        setattr(N, n, f)
    return [*totals.items(), ("whole network", whole)]


def table(rows: list[tuple[str, float]], base: float | None = None, ms: bool = False) -> list[str]:
    """A markdown table of (variant, seconds), shown in milliseconds when ``ms``; with ``base``, base / each."""
    head = [
        f"| variant | {'ms' if ms else 'seconds'} |" + (" vs first row |" if base else ""),
        "| --- | ---: |" + (" ---: |" if base else ""),
    ]
    scale = 1e3 if ms else 1
    return head + [f"| {n} | {s * scale:.2f} |" + (f" {base / s:.2f}x |" if base else "") for n, s in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=OFFICIAL)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/results/speed_candidates.md"))
    args = parser.parse_args()
    y = np.random.default_rng(0).random((384, 512), dtype=np.float32)
    net = network_rows(args.weights, y, args.threads)
    composition = composition_rows(y)
    transform = transform_rows()
    tiles = tile_rows()
    lines = [
        "# CPU speed candidates",
        "",
        f"`python scripts/speed_candidates.py` ({args.threads} threads): the authors' LapSRN x4 on one 512x384 LR "
        "luminance image to 2048x1536, median of 3 runs after a warm-up.",
        "",
        "## The network",
        "",
        *table(net, net[0][1]),
        "",
        "## Winograd's tile: one 3x3 conv on one thread, a 264x264 map of 64 channels",
        "",
        *table(tiles, tiles[0][1], ms=True),
        "",
        "## The 3x3 conv's input transform: one thread, a 256x256 map of 64 channels",
        "",
        *table(transform, transform[0][1], ms=True),
        "",
        "## MS-LapSRN's residual: the bundled default on the same image",
        "",
        *table(composition, composition[0][1]),
        "",
        "## Around the network (same image, x4 output)",
        "",
        *table(stage_rows(y)),
        "",
        "## Start-up, colour and weights: the whole command's overhead",
        "",
        *table(startup_rows() + colour_rows(y) + weights_rows()),
        "",
        "## Tiling under one memory budget",
        "",
        *table(tiling_rows(args.weights, y)),
        "",
        "## Where the shipped engine spends its time (one run)",
        "",
        *table(profile(args.weights, y)),
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
