"""The convolutions by Winograd's minimal filtering: NumPy's BLAS and compiled transforms.

Both networks spend almost all their time in 64 -> 64 3x3 convolutions.
Winograd's algorithm (Lavin & Gray, CVPR 2016) computes each 6x6 block of
outputs from an 8x8 block of inputs with 64 multiplications per channel pair
instead of 324 (F(6x6, 3x3), at the points 0, +-1, +-2, +-1/2):

    out_tile = A^T [ (G w G^T) * (B^T d B) ] A

The 64 elementwise products, summed over input channels, are 64 matrix
products (tiles x Cin) @ (Cin x Cout), which NumPy's BLAS runs; the small input
and output transforms are loops compiled by Numba (``kernels.py``), loaded as
machine code (``native.py``). Both run over bands of tiles, each band start to
finish on one thread, the caller or a helper (input transform, single-threaded BLAS, output
transform), so its data stays in that core's cache and no two thread pools
compete for the cores. The output transform also adds the
bias, an optional skip (MS-LapSRN's local residual) and the LeakyReLU; the
input transform can apply a LeakyReLU first (MS-LapSRN's pre-activation), so
one layer reads and writes its feature maps once.

F(6x6, 3x3) does 21 % fewer multiplications per output than F(4x4, 3x3) (1.78 against
2.25 per pixel and channel pair) and moves 21 % less transformed data, for a larger
rounding error, still within float32's tolerance of the reference (tests/test_engine.py); the
products are the larger part of the time on every CPU, and the largest where FMA units
are narrow (``scripts/speed_candidates.py`` measures both).

The feature upsampler (the released 3x3 stride-2 transposed conv, cropped) is
one 2x2 convolution with a group of output channels per output phase, run by
F(4x4, 2x2) with the phases written straight to their pixels. The image
branch's 4x4 transposed conv has one channel and runs as a direct loop.

Feature maps are zero-bordered HWC arrays (``FeatureMap``), whose border is
the convolution's zero padding, so layers chain without copies. Results equal
the reference convolutions to float32 rounding (``tests/test_engine.py``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np


def toom_cook(points: list[float], m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A^T (m x n), G (n x r), B^T (n x n) of Winograd's F(m, r) at these n - 1 points and infinity (n = m + r - 1).

    y = A^T [(G g) * (B^T d)] is the correlation y_i = sum_k d_(i+k) g_k; in 2-D the same matrices
    are applied along rows and columns. The tests check both sets used here against conv2d.
    """
    n = m + r - 1
    p = np.asarray(points, float)
    at, g, bt = np.zeros((m, n)), np.zeros((n, r)), np.zeros((n, n))
    for j in range(n - 1):
        others = np.delete(p, j)
        at[:, j] = p[j] ** np.arange(m)
        g[j] = p[j] ** np.arange(r) / np.prod(p[j] - others)
        bt[j, : n - 1] = np.polynomial.polynomial.polyfromroots(others)
    at[m - 1, n - 1] = g[n - 1, r - 1] = 1
    bt[n - 1] = np.polynomial.polynomial.polyfromroots(p)
    return at, g, bt


# F(6x6, 3x3) for the 3x3 convs, F(4x4, 2x2) for the feature upsampler: B^T and A^T are
# hand-expanded in kernels.py (bt8, at8, bt5, at5), G is used as a matrix on the weights.
AT, G, BT = toom_cook([0, 1, -1, 2, -2, 0.5, -0.5], 6, 3)
AT2, G2, BT2 = toom_cook([0, 1, -1, 2], 4, 2)
CONV_TILE, UPSAMPLE_TILE = 6, 4  # outputs per side of a tile
BAND_TILES = 96  # about this many tiles per band: 2 x 64 x 96 x 64 floats = 3.1 MB of scratch per thread


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()
_threads = os.cpu_count() or 1
_call_threads: ContextVar[int | None] = ContextVar("lapsrn_threads", default=None)  # ``using_threads``
_scratch = threading.local()


def threads() -> int:
    """Threads that run the bands: this call's (``using_threads``), else the process's (``set_threads``)."""
    return _call_threads.get() or _threads


def set_threads(n: int) -> None:
    """The process's default thread count for the bands (every core unless set), the calling thread included."""
    global _threads
    _threads = max(1, n)


@contextmanager
def using_threads(n: int | None) -> Iterator[None]:
    """Run the bands of the passes inside on ``n`` threads (None: the process's default); other callers, and
    other threads, keep theirs. How one ``Upscaler(threads=...)`` limits itself without a process-wide setting."""
    token = _call_threads.set(max(1, n) if n else None)
    try:
        yield
    finally:
        _call_threads.reset(token)


def _helpers(n: int) -> ThreadPoolExecutor:
    """The pool of helper threads, with room for at least ``n``; made, or made larger, when a call needs it.
    A replaced pool finishes what it was given. Call with ``_pool_lock`` held."""
    global _pool, _pool_size
    if _pool is None or _pool_size < n:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool_size = max(n, _threads - 1)
        _pool = ThreadPoolExecutor(_pool_size, thread_name_prefix="lapsrn")
    return _pool


def map_threads(work, items: range) -> None:
    """work(item) for every item, on ``threads()`` threads: the caller and helpers from a pool.

    Each thread takes the next item until none is left, so a call hands the pool one task per
    helper instead of a future per item, and the caller works instead of waiting. When the caller
    runs out of items, helpers that have not started are cancelled: a call never waits on the pool
    (which may be busy with another caller's items, or be running this very call). An exception
    stops every thread from taking more items and is raised here (the caller's own first).
    Also runs the colour composition's bands (``colour``): one setting, one pool.
    """
    helpers = min(threads(), len(items)) - 1
    if helpers <= 0:
        for item in items:
            work(item)
        return
    todo, lock, failed = iter(items), threading.Lock(), []

    def drain() -> None:
        try:
            while not failed:
                with lock:
                    item = next(todo, None)
                if item is None:
                    return
                work(item)
        except BaseException:  # Ctrl-C in the caller too
            failed.append(True)  # the others stop taking items
            raise

    with _pool_lock:  # submitted before another call could replace the pool
        running = [_helpers(helpers).submit(drain) for _ in range(helpers)]
    try:
        drain()
    finally:  # wait for the helpers that started; the caller's own error, if any, goes on
        errors = [None if future.cancel() else future.exception() for future in running]
    for error in errors:
        if error is not None:
            raise error


def _buffers(v_size: int, m_size: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's scratch for one band's transformed input (v) and products (m), reused across calls."""
    v, m = getattr(_scratch, "v", None), getattr(_scratch, "m", None)
    if v is None or v.size < v_size:
        v = _scratch.v = np.empty(v_size, np.float32)
    if m is None or m.size < m_size:
        m = _scratch.m = np.empty(m_size, np.float32)
    return v, m


_spares = threading.local()  # per calling thread: shape -> arrays handed back by FeatureMap.recycle


SPARE_BYTES = 64 << 20  # recycled buffers kept between passes (a folder of small images reuses them)


def release_spares(keep: int = SPARE_BYTES) -> None:
    """Give the recycled buffers back to the system unless together they take at most ``keep`` bytes."""
    held = sum(a.nbytes for arrays in getattr(_spares, "by_shape", {}).values() for a in arrays)
    if held > keep:
        _spares.by_shape = {}


REUSE_BYTES = 32 << 20  # blocks up to this size stay in the process when freed: glibc's largest mmap threshold
_libc = None  # glibc, once ``reuse_freed_memory`` has been called
_keeping = False


def reuse_freed_memory() -> bool:
    """Let glibc keep freed blocks of up to 32 MB for the next arrays while the passes are small.

    By default it unmaps or trims away most of what a pass frees, so the next image's arrays of other
    sizes (feature maps, colour bands, encoder buffers) page-fault anew, one fault per 4 kB. A pass
    whose maps are larger than that (``keep_freed_memory(False)``) returns what is kept and runs with
    glibc's default thresholds, 128 kB, though fixed now where glibc would slide them up: kept blocks
    took a 2048x2048 x4 upscale to 1,066,528 kB, returned ones to 902,896 kB (scripts/measure_big.sh).
    Process-wide, so the command line calls it, not the library, which leaves its host's allocator
    alone. False, and nothing changed, where the C library is not glibc.
    """
    global _libc
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    _libc = ctypes.CDLL(None)
    keep_freed_memory(True)
    return True


def keep_freed_memory(keep: bool) -> None:
    """Keep freed blocks for reuse (small passes), or return them now and as they are freed (large ones);
    nothing unless ``reuse_freed_memory`` was called. ``tiling.Tiler`` decides before each pass."""
    global _keeping
    if _libc is None or keep == _keeping:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h; glibc's defaults are 128 kB for both
    _libc.mallopt(m_mmap_threshold, REUSE_BYTES if keep else 128 << 10)
    _libc.mallopt(m_trim_threshold, 8 * REUSE_BYTES if keep else 128 << 10)
    if not keep:
        _libc.malloc_trim(0)
    _keeping = keep


FRESH_BYTES = 4 << 20  # a fresh map at least this large has its border zeroed on every thread (FeatureMap.empty)


def padded(n: int) -> int:
    """A feature map's rows (or columns) for n inside: a zero one before, and after enough for whole tiles of
    the 3x3 convs (6) and of the upsampler (4), plus the one their windows read beyond."""
    return max(CONV_TILE * -(-n // CONV_TILE), UPSAMPLE_TILE * -(-n // UPSAMPLE_TILE)) + 2


@dataclass
class FeatureMap:
    """An h x w x c map inside a zero border: one pixel at top/left, enough at bottom/right for whole tiles
    of the 3x3 convs (6x6) and of the upsampler (4x4)."""

    data: np.ndarray  # (padded(h), padded(w), c) float32
    h: int
    w: int

    @classmethod
    def empty(cls, h: int, w: int, c: int) -> FeatureMap:
        """Uninitialised inside, zero border; in a recycled buffer of this shape when there is one.

        Where a fresh buffer's memory is first touched, the system zeroes each new page (2 MB ones for
        NumPy's large arrays), which is why it is not touched here on one thread: a buffer larger than
        REUSE_BYTES comes zeroed from fresh pages (glibc maps it anew, and calloc's zeros cost nothing
        until the band threads write them); a smaller fresh one has its side columns, which reach
        every row, zeroed in blocks of rows on every thread.
        """
        shape = (padded(h), padded(w), c)
        spare = getattr(_spares, "by_shape", {}).get(shape)
        if spare:
            data = spare.pop()
        elif 4 * np.prod(shape) > REUSE_BYTES:
            return cls(np.zeros(shape, np.float32), h, w)
        else:
            data = np.empty(shape, np.float32)
        data[0], data[h + 1 :] = 0, 0

        def sides(r0: int) -> None:
            data[r0 : r0 + step, 0], data[r0 : r0 + step, w + 1 :] = 0, 0

        step = shape[0] if spare or data.nbytes < FRESH_BYTES else -(-shape[0] // _threads)
        map_threads(sides, range(0, shape[0], step))
        return cls(data, h, w)

    def recycle(self) -> None:
        """Hand this map's buffer to the next ``empty`` of its shape: a fresh buffer costs a page fault per 4 kB.

        Only for a map that owns its buffer and that nothing reads any more.
        """
        if not hasattr(_spares, "by_shape"):
            _spares.by_shape = {}
        _spares.by_shape.setdefault(self.data.shape, []).append(self.data)

    @classmethod
    def from_array(cls, x: np.ndarray) -> FeatureMap:
        """From an (h, w, c) or (h, w) array."""
        x = x[..., None] if x.ndim == 2 else x
        fm = cls.empty(x.shape[0], x.shape[1], x.shape[2])
        fm.data[1 : fm.h + 1, 1 : fm.w + 1] = x
        return fm

    @property
    def inside(self) -> np.ndarray:
        """The (h, w, c) view without the border."""
        return self.data[1 : self.h + 1, 1 : self.w + 1]


@dataclass(frozen=True)
class Conv:
    """A 3x3 convolution ready for F(6x6, 3x3): G w G^T as 64 matrices (Cin x Cout), and the bias."""

    u: np.ndarray  # (64, Cin, Cout) float32
    bias: np.ndarray  # (Cout,) float32

    @classmethod
    def from_weights(cls, w: np.ndarray, b: np.ndarray | None) -> Conv:
        """From the reference layout: weight (Cout, Cin, 3, 3), bias (Cout,); transformed in float64."""
        c_out, c_in = w.shape[:2]
        if b is not None and np.shape(b) != (c_out,):  # the compiled transforms read one bias per output
            raise ValueError(f"a conv with {c_out} outputs needs {c_out} biases, got shape {np.shape(b)}")
        u = np.einsum("ia,kcab,jb->ijck", G, w.astype(np.float64), G).reshape(64, c_in, c_out)
        bias = np.zeros(c_out, np.float32) if b is None else b.astype(np.float32)
        return cls(np.ascontiguousarray(u, np.float32), np.ascontiguousarray(bias))


@dataclass(frozen=True)
class Upsampler:
    """The released x2 feature upsampler as one 2x2 conv with 4 x Cout outputs, ready for F(4x4, 2x2)."""

    u: np.ndarray  # (25, Cin, 4 Cout) float32
    bias: np.ndarray  # (Cout,) float32

    @classmethod
    def from_weights(cls, w: np.ndarray, b: np.ndarray) -> Upsampler:
        """From ConvTranspose2d(C, C, 3, stride 2) weights (Cin, Cout, 3, 3), cropped to 2h x 2w.

        Output row 2m + a sums input rows m - 1 and m with taps 2 and 0 when a = 0, and row m with
        tap 1 when a = 1 (``TAPS``; the same for columns). So output phase (a, b) is a 2x2
        convolution of the input padded by one at the top/left, with some taps zero.
        """
        c_in, c_out = w.shape[:2]
        if np.shape(b) != (c_out,):  # the compiled transforms read one bias per output
            raise ValueError(f"an upsampler with {c_out} outputs needs {c_out} biases, got shape {np.shape(b)}")
        k = np.zeros((2, 2, c_out, c_in, 2, 2))  # phase a, b, out, in, window row, col
        for a in range(2):
            for b_ in range(2):
                for i, ti in enumerate(TAPS[a]):
                    for j, tj in enumerate(TAPS[b_]):
                        if ti is not None and tj is not None:
                            k[a, b_, :, :, i, j] = w[:, :, ti, tj].T
        u = np.einsum("ia,pkcab,jb->ijcpk", G2, k.reshape(4, c_out, c_in, 2, 2), G2, optimize=True)
        u = u.reshape(25, c_in, 4 * c_out)
        return cls(np.ascontiguousarray(u, np.float32), np.ascontiguousarray(b, np.float32))


TAPS = ((2, 0), (None, 1))  # output phase a -> transposed-conv tap applied to input row m - 1, row m


def _run_bands(tiles: int, u: np.ndarray, transform_in, transform_out) -> None:
    """For each band of about BAND_TILES of the ``tiles``: transform_in(v, first, n), v @ u into m, then
    transform_out(m, first, n).

    u: (positions, Cin, Cout). Each band runs on one thread (``map_threads``) with its own scratch, so the
    batched matmul writes in place and the band's data stays in that core's cache; bands write
    disjoint tiles of the output. Call inside ``single_threaded_blas()``.

    A band has an odd number of tiles. Its v and m hold the 64 positions n x C floats apart, and each
    tile's transform reads or writes all 64 at once: with n a multiple of 16 and 64 channels, they lie
    a multiple of 4 kB apart and all fall in the same few sets of the core's L1 cache, evicting each
    other. With n odd they spread over every set (``scripts/speed_candidates.py``).
    """
    positions, c_in, c_out = u.shape
    bands = -(-tiles // BAND_TILES)
    bands = -(-bands // _threads) * _threads  # about as many bands for each thread, so none waits for a last one
    band = -(-tiles // bands) | 1  # odd: see above

    def work(first: int) -> None:
        n = min(band, tiles - first)
        v_flat, m_flat = _buffers(positions * band * c_in, positions * band * c_out)
        v = v_flat[: positions * n * c_in].reshape(positions, n, c_in)
        m = m_flat[: positions * n * c_out].reshape(positions, n, c_out)
        transform_in(v, first, n)
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite result is the caller's to report
            np.matmul(v, u, out=m)
        transform_out(m, first, n)

    map_threads(work, range(0, tiles, band))


def _tiles(x: FeatureMap, tile: int, c_in: int) -> tuple[int, int]:
    """The tiles of ``tile`` x ``tile`` outputs covering x, and how many make a row; checks its channels."""
    if x.data.shape[2] != c_in:  # the compiled transforms would read past the map
        raise ValueError(f"a map of {x.data.shape[2]} channels into a conv of {c_in} inputs")
    tw = -(-x.w // tile)
    return -(-x.h // tile) * tw, tw


_blas = None  # threadpoolctl's view of the loaded BLAS libraries, made at the first pass


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """BLAS on at most ``n`` threads inside, its previous setting after.

    One controller, made at the first pass: finding the loaded BLAS libraries takes a millisecond,
    which every image of a folder would pay again. The products are NumPy's, whose BLAS is loaded
    with it, so a library loaded later (torch's) cannot be the one that matters here.
    """
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    with _blas.limit(limits=n, user_api="blas"):
        yield


def single_threaded_blas():
    """BLAS single-threaded, while the threads of ``map_threads`` each run their own bands."""
    return blas_threads(1)


def conv3x3(
    x: FeatureMap,
    conv: Conv,
    pre: float = 1.0,
    post: float = 1.0,
    skip: FeatureMap | None = None,
    out: FeatureMap | None = None,
) -> FeatureMap:
    """post_act(conv(pre_act(x)) + skip), where *_act is LeakyReLU with that slope (1.0: none).

    ``out``: a map of the right size to write into (not x or skip), so a chain of layers reuses two buffers.
    """
    from . import native

    if out is None:
        out = FeatureMap.empty(x.h, x.w, conv.u.shape[2])
    if (out.data.shape[2], out.h, out.w) != (conv.u.shape[2], x.h, x.w):
        raise ValueError(f"an output map of shape {out.data.shape} for this conv of a {x.data.shape} map")
    if any(np.may_share_memory(out.data, m.data) for m in (x, skip) if m is not None):  # bands race; see kernels
        raise ValueError("a conv's output map must not share memory with its input or skip")
    tiles, tw = _tiles(x, CONV_TILE, conv.u.shape[1])
    _run_bands(
        tiles,
        conv.u,
        native.input_transform(x.data, tw, np.float32(pre)),
        native.output_transform(conv.bias, out.data, None if skip is None else skip.data, x.h, x.w, np.float32(post)),
    )
    return out


def upsample2x(x: FeatureMap, up: Upsampler, post: float = 1.0) -> FeatureMap:
    """post_act(the released x2 feature upsampler), by Winograd F(4x4, 2x2): a 2h x 2w map."""
    from . import native

    out = FeatureMap.empty(2 * x.h, 2 * x.w, up.bias.shape[0])
    tiles, tw = _tiles(x, UPSAMPLE_TILE, up.u.shape[1])
    _run_bands(
        tiles,
        up.u,
        native.upsample_input_transform(x.data, tw),
        native.upsample_output_transform(up.bias, out.data, x.h, x.w, np.float32(post)),
    )
    return out


def add_upsample_residual(
    x: FeatureMap, up: Upsampler, post: float, residual: Conv, out: np.ndarray, band_bytes: int
) -> None:
    """out += residual(post_act(upsample(x))), in bands of rows: the last level's features never exist whole.

    The last level's upsampled 64-channel map is read by nothing but the residual conv, yet at full
    output size it would be the largest array of the pass. Each band of tile rows is upsampled with
    one tile row (4 input rows) of context above and below, the residual conv runs on it, and the
    context rows are dropped, so the seams do not show. ``band_bytes`` bounds one band's map.
    """
    h, w, c_out = x.h, x.w, up.bias.shape[0]
    th = -(-h // 4)
    band = max(1, band_bytes // (8 * (2 * w + 2) * c_out * 4))  # tile rows per band
    for t0 in range(0, th, band):
        t1 = min(t0 + band, th)
        a0, a1 = max(t0 - 1, 0), min(t1 + 1, th)
        rows = FeatureMap(x.data[4 * a0 : 4 * a1 + 2], min(h, 4 * a1) - 4 * a0, w)  # its border row: real context
        features = upsample2x(rows, up, post)
        res = conv3x3(features, residual)
        r0, r1 = 8 * t0, min(8 * t1, 2 * h)
        out[r0:r1] += res.data[1 + r0 - 8 * a0 : 1 + r1 - 8 * a0, 1 : 2 * w + 1, 0]
        features.recycle()
        res.recycle()


def image_upsample(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The image branch: ConvTranspose2d(1, 1, 4, stride 2, padding 1) of a float32 (h, w) plane."""
    from . import native

    out = np.empty((2 * x.shape[0], 2 * x.shape[1]), np.float32)
    native.image_upsample(np.ascontiguousarray(x, np.float32), np.ascontiguousarray(k, np.float32), out)
    return out
