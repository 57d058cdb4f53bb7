"""``lapsrn bench``: speed and quality side by side -- bicubic, our models, OpenCV's LapSRN graphs.

Every method runs in a process of its own, because two runtimes' thread pools
in one process disturb each other, and a user runs one of them, not both. All
methods get the same LR files (uint8 RGB, made from the HR images with the
protocol's MATLAB bicubic), each process warms up on the first image, then
times each image from uint8 array in to uint8 array out: colour conversion,
network, chroma upscaling, everything a user waits for. The methods of a case
run one after another in rotating order, round after round, so that drift of
this noisy machine hits all of them alike.

Reported per case and method: protocol PSNR/SSIM, median seconds per image,
output megapixels per second, throughput relative to OpenCV's graph for that
scale, peak RSS of the whole process, FLOPs per output pixel as a direct
convolution counts them (multiply-adds x 2), and the rate that gives in
GFLOP/s beside a float32 matmul measured here in the same conditions.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import evaluate as E
from . import protocol as P


@dataclass
class Method:
    """One contender: how to load it and which scales it serves."""

    name: str
    kind: str  # "bicubic", "lapsrn" or "opencv"
    models: dict[int, str] = field(default_factory=dict)  # scale -> weights ("" = bundled default)
    only: tuple[str, ...] = ()  # case names it runs on; empty = all

    def serves(self, case: Case) -> bool:
        return (self.kind == "bicubic" or case.scale in self.models) and (not self.only or case.name in self.only)


@dataclass
class Case:
    """LR inputs (and HR for scoring, when there is one) at one scale."""

    name: str
    scale: int
    lr: list[Path]
    hr: list[Path] | None  # None: speed only


def default_methods(shared: Path, full: bool = False) -> list[Method]:
    """Bicubic, the bundled model, the official LapSRN per scale and D5R8, OpenCV's graphs."""
    official = shared / "weights/official"
    peers = shared / "peers/opencv"
    return [
        Method("bicubic", "bicubic"),
        Method("lapsrn default (MS-LapSRN D5R2, ours)", "lapsrn", {s: "" for s in (2, 4, 8)}),
        Method("lapsrn + official LapSRN", "lapsrn", {s: str(official / f"LapSRN_x{s}.mat") for s in (2, 4, 8)}),
        Method(
            "lapsrn + official MS-LapSRN D5R8",
            "lapsrn",
            {s: str(official / "MSLapSRN_D5R8.mat") for s in (2, 4, 8)},
            () if full else ("Set14",),
        ),  # 4x the work of D5R2: Set14 only unless --full
        Method("OpenCV dnn_superres LapSRN", "opencv", {s: str(peers / f"LapSRN_x{s}.pb") for s in (2, 4, 8)}),
    ]


def prepare_cases(
    datasets: list[Path], scales: list[int], big: int, work: Path, limit: int | None = None
) -> list[Case]:
    """Write the LR inputs once: protocol LR of every HR image, and one big x4 image (speed only)."""
    from .io import read_image

    cases = []
    for folder in datasets:
        files = E.image_files(folder)[:limit]
        for scale in scales:
            d = work / f"{folder.name}_x{scale}"
            d.mkdir(parents=True)
            lrs, hrs = [], []
            for f in files:
                hr, lr = E.prepare(read_image(f).pixels, scale)
                np.save(d / f"{f.stem}_hr.npy", P.im2uint8(hr))
                _save_png(P.im2uint8(lr), d / f"{f.stem}.png")
                lrs.append(d / f"{f.stem}.png")
                hrs.append(d / f"{f.stem}_hr.npy")
            cases.append(Case(folder.name, scale, lrs, hrs))
    if big:
        d = work / f"big_{big}"
        d.mkdir()
        src = read_image(E.image_files(datasets[0])[0]).pixels
        _save_png(P.im2uint8(np.clip(P.imresize(P.gray_to_rgb(src), size=(big, big)), 0, 1)), d / "big.png")
        cases.append(Case(f"{big}x{big} LR", 4, [d / "big.png"], None))
    return cases


def _save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path, compress_level=1)


def matmul_peak(threads: int, sizes: tuple[int, ...] = (1024, 2048, 4096), repeats: int = 5) -> float:
    """Best float32 GFLOP/s of square matmuls with this many BLAS threads: the yardstick for our convs."""
    from threadpoolctl import threadpool_limits

    best = 0.0
    with threadpool_limits(threads, user_api="blas"):
        for n in sizes:
            a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
            a @ b
            for _ in range(repeats):
                t = time.perf_counter()
                a @ b
                best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def flops_per_pixel(spec, levels: int) -> float:
    """Multiply-adds x 2 of a direct computation of every conv and transposed conv, per output pixel.

    Per LR pixel: the input conv (1 -> 64); at level l (4^l pixels per LR pixel) the embedding's
    64 -> 64 3x3 convs, the 3x3 transposed conv (each input pixel scatters 3x3 x 64 outputs), the
    residual conv (64 -> 1) at the level's output size and the image branch's 4x4 transposed conv.
    """
    conv = 2 * 9 * 64 * 64
    convs = spec.depth if spec.arch == "LapSRN" else spec.depth * spec.recursions
    total = 2 * 9 * 64  # input conv
    for l in range(levels):
        total += 4**l * (convs * conv + conv + 2 * 16) + 4 ** (l + 1) * 2 * 9 * 64
    return total / 4**levels


def _worker(spec: dict) -> dict:
    """Runs in a fresh process: load one method, warm up, time every input, write the outputs."""
    from PIL import Image

    threads, scale, kind, model = spec["threads"], spec["scale"], spec["kind"], spec["model"]
    if kind == "opencv":
        import cv2

        cv2.setNumThreads(threads)
        sr = cv2.dnn_superres.DnnSuperResImpl_create()
        sr.readModel(model)
        sr.setModel("lapsrn", scale)

        def run(x: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(sr.upsample(np.ascontiguousarray(x[..., ::-1]))[..., ::-1])
    else:
        from threadpoolctl import threadpool_limits

        from .engine import set_threads

        set_threads(threads)  # this worker process runs this one method: its whole process is limited
        threadpool_limits(threads, user_api="blas")
        if kind == "bicubic":
            from .colour import bicubic

            def run(x: np.ndarray) -> np.ndarray:
                return P.im2uint8(bicubic(x / 255.0, scale))
        else:
            import lapsrn

            from .engine import reuse_freed_memory

            reuse_freed_memory()  # as the command line does
            up = lapsrn.load(model or None, device="cpu")

            def run(x: np.ndarray) -> np.ndarray:
                return up.upscale(x, scale)

    inputs = [np.asarray(Image.open(p).convert("RGB")) for p in spec["inputs"]]
    run(inputs[0])  # warm-up: allocator, the engine's kernels from their cache, OpenCV graph set-up
    seconds, pixels = [], []
    for x, out in zip(inputs, spec["outputs"]):
        start = time.perf_counter()
        y = run(x)
        seconds.append(time.perf_counter() - start)
        pixels.append(y.shape[0] * y.shape[1])
        if out:
            np.save(out, y)
    return {"seconds": seconds, "pixels": pixels, "rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory. /proc's VmHWM starts afresh at exec; ru_maxrss may carry the
    parent's high-water mark over fork + exec, so it is only the fallback (macOS: bytes, Linux: kB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def _spawn(method: Method, case: Case, threads: int, work: Path, save: bool) -> dict:
    """One worker process; its JSON comes back on stdout."""
    out_dir = work / "out" / f"{method.name}_{case.name}_x{case.scale}".replace(" ", "_").replace("/", "_")
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "threads": threads,
        "scale": case.scale,
        "kind": method.kind,
        "model": method.models.get(case.scale, ""),
        "inputs": [str(p) for p in case.lr],
        "outputs": [str(out_dir / f"{p.stem}.npy") if save else "" for p in case.lr],
    }
    res = subprocess.run([sys.executable, "-m", "lapsrn.bench", json.dumps(spec)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{method.name} on {case.name} x{case.scale} failed: {res.stderr.strip().splitlines()[-1:]}")
    result = json.loads(res.stdout.strip().splitlines()[-1])
    result["outputs"] = spec["outputs"]
    return result


@dataclass
class Row:
    """One method on one case."""

    case: str
    scale: int
    method: str
    psnr: float | None
    ssim: float | None
    median_s: float
    mp_per_s: float
    rss_mb: float
    flops_per_px: float | None
    vs_opencv: float | None = None


def run_bench(
    methods: list[Method], cases: list[Case], threads: int, work: Path, rounds: int = 1, progress=print
) -> tuple[list[Row], float]:
    """Every method on every case it serves, interleaved over rounds; returns rows and the matmul peak."""
    peak = matmul_peak(threads)
    from .weights import read

    flops = {}
    for m in methods:
        for s, weights in m.models.items():
            if m.kind == "lapsrn":  # OpenCV 5 cannot count its LapSRN graph (DepthToSpace): left blank
                flops[m.name, s] = flops_per_pixel(read(weights or None)[0], int(np.log2(s)))
    rows = []
    for case in cases:
        active = [m for m in methods if m.serves(case)]
        runs: dict[str, list[dict]] = {m.name: [] for m in active}
        for r in range(rounds):
            order = active[r % len(active) :] + active[: r % len(active)]
            for m in order:
                progress(f"{case.name} x{case.scale}: {m.name} (round {r + 1}/{rounds})")
                runs[m.name].append(_spawn(m, case, threads, work, save=r == 0 and case.hr is not None))
        for m in active:
            first = runs[m.name][0]
            per_image = np.median([res["seconds"] for res in runs[m.name]], axis=0)
            psnr = ssim = None
            if case.hr is not None:
                scores = [
                    E.score(np.load(h) / 255.0, np.load(o) / 255.0, case.scale)
                    for h, o in zip(case.hr, first["outputs"])
                ]
                psnr, ssim = float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))
            rows.append(
                Row(
                    case.name,
                    case.scale,
                    m.name,
                    psnr,
                    ssim,
                    float(np.median(per_image)),
                    sum(first["pixels"]) / 1e6 / float(np.sum(per_image)),
                    max(res["rss_mb"] for res in runs[m.name]),
                    flops.get((m.name, case.scale)),
                )
            )
        cv = next(
            (r for r in rows if r.case == case.name and r.scale == case.scale and r.method.startswith("OpenCV")), None
        )
        for r in rows:
            if cv and r.case == case.name and r.scale == case.scale:
                r.vs_opencv = r.mp_per_s / cv.mp_per_s
    return rows, peak


def markdown(rows: list[Row], peak: float, threads: int, command: str, wall: list[str] | None = None) -> str:
    """docs/BENCHMARKS.md."""
    import numba

    from .engine.native import target_cpu

    machine = cpu_model()
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')}; do not edit by hand.",
        "",
        f"Machine: {machine}, {threads} threads, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"Numba {numba.__version__}{_opencv_version()}, BLAS {blas_library()}, the engine's kernels compiled for "
        f"{target_cpu()[0]}. float32 matmul peak measured here: "
        f"**{peak:.0f} GFLOP/s**.",
        "",
        *(wall or []),
        "## In-process time per image",
        "",
        "Each method runs in its own process on the same uint8 LR images; times are from uint8 in to uint8 out "
        "(colour conversion, network, chroma), median over the images of a case (and over rounds); MP/s is output "
        "megapixels per second over the whole case; x OpenCV is that throughput over OpenCV's for the same scale; "
        "RSS is the whole process's peak. kFLOP/px counts a direct convolution's multiply-adds x 2; GFLOP/s is that "
        "work per second (an algorithm with fewer multiplications can exceed 100 % of the matmul peak).",
        "",
    ]
    for case, scale in dict.fromkeys((r.case, r.scale) for r in rows):
        lines += [
            f"## {case}, x{scale}",
            "",
            "| method | PSNR | SSIM | median s/img | MP/s | x OpenCV | peak RSS MB | kFLOP/px | GFLOP/s "
            "| % matmul peak |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in (r for r in rows if (r.case, r.scale) == (case, scale)):
            rate = r.flops_per_px * r.mp_per_s * 1e6 / 1e9 if r.flops_per_px else None
            lines.append(
                f"| {r.method} | {_f(r.psnr, 2)} | {_f(r.ssim, 4)} | {r.median_s:.3f} | {r.mp_per_s:.3f} "
                f"| {_f(r.vs_opencv, 2)} | {r.rss_mb:.0f} | {_f(r.flops_per_px and r.flops_per_px / 1e3, 0)} "
                f"| {_f(rate, 1)} | {_f(rate and 100 * rate / peak, 0)} |"
            )
        lines.append("")
    return "\n".join(lines)


def cpu_model() -> str:
    """The processor's name as the OS reports it (/proc/cpuinfo's model name on Linux): speed figures differ
    twofold between machines, so a table must say which one made it."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            return f"{names[0]} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_library() -> str:
    """NumPy's BLAS and the kernels it picked for this CPU (OpenBLAS: e.g. SkylakeX for AVX-512, Haswell or Zen
    for AVX2): the products' speed, and so the engine's, follows them."""
    from threadpoolctl import threadpool_info

    libraries = [i for i in threadpool_info() if i["user_api"] == "blas"]
    ours = [i for i in libraries if "numpy" in i.get("filepath", "")] or libraries
    if not ours:
        return "unknown"
    i = ours[0]
    kernels = f", {i['architecture']} kernels" if i.get("architecture") else ""
    return f"{i['internal_api']} {i.get('version') or ''}{kernels}".replace(" ,", ",")


def _f(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _opencv_version() -> str:
    try:
        import cv2

        return f", OpenCV {cv2.__version__}"
    except ImportError:
        return ""


def bench(
    datasets: list[Path],
    scales: list[int],
    shared: Path,
    threads: int,
    big: int,
    rounds: int,
    output: Path,
    command: str,
    limit: int | None = None,
    full: bool = False,
    progress=print,
    wall_rounds: int = 0,
    video_frames: int = 0,
) -> list[Row]:
    """The whole benchmark: prepare inputs, run, write the markdown atomically.

    ``wall_rounds`` > 0 adds the whole-process comparison (``process_bench``) at x4: the largest
    image of the first dataset as a photo, the first dataset's x4 LR images as a folder, a 64x64 crop;
    and with ``video_frames`` > 0 a 640x360 clip of that many frames panning across the photo, at x2.
    """
    from . import process_bench
    from .io import atomic_path

    methods = default_methods(shared, full)
    try:
        import cv2  # noqa: F401
    except ImportError:
        progress("OpenCV not installed (pip install 'lapsrn[bench]'): its rows are left out")
        methods = [m for m in methods if m.kind != "opencv"]
    wall = None
    with tempfile.TemporaryDirectory(prefix="lapsrn-bench-") as tmp:
        cases = prepare_cases(datasets, scales, big, Path(tmp), limit)
        if wall_rounds and any(m.kind == "opencv" for m in methods):
            from PIL import Image

            x4 = next(c for c in cases if c.scale == 4 and c.hr is not None) if 4 in scales else None
            photo = max(E.image_files(datasets[0])[:limit], key=lambda f: np.prod(Image.open(f).size))
            folder = x4.lr if x4 else []
            jobs = process_bench.prepare_jobs(photo, folder, Path(tmp) / "wall")
            jobs = [j for j in jobs if not (j.source.is_dir() and not folder)]
            if video_frames:
                jobs.append(process_bench.prepare_video(photo, Path(tmp) / "wall", video_frames))
            graphs = shared / "peers/opencv"
            wall = process_bench.markdown(
                process_bench.run_wall(jobs, graphs, Path(tmp) / "wall", wall_rounds, progress), wall_rounds
            )
        rows, peak = run_bench(methods, cases, threads, Path(tmp), rounds, progress)
    with atomic_path(output) as t:
        t.write_text(markdown(rows, peak, threads, command, wall) + "\n")
    return rows


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
