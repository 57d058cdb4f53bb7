"""Which CPU speed tricks pay: the authors' LapSRN x4 on one 512x384 LR image, network only.

    python scripts/speed_candidates.py            # writes docs/results/speed_candidates.md

Each row adds one trick to the row above (the last row is what lapsrn ships), timed in this
process with the same threads: median of 3 runs after a warm-up. Then the candidates that
lost, each on top of the row before the Winograd one: ONNX Runtime on the exported graph,
PyTorch's bundled NNPACK (Winograd F(6x6, 3x3)) for the 64->64 convs, and torch.compile.
Then a per-layer profile of the shipped path. Every shipped trick's output is tested equal to
the plain path (tests/test_models.py, tests/test_winograd.py).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections import defaultdict
from pathlib import Path

import os

import numpy as np
import torch

from lapsrn import models as M
from lapsrn import winograd
from lapsrn.weights import load

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


def variant(net: torch.nn.Module, channels_last: bool, phases: bool, inplace: bool, chunks: bool, wino: bool = False):
    """A copy of net set up with the chosen tricks, and a runner for it."""
    net = copy.deepcopy(net).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.LeakyReLU):
            m.inplace = inplace and m.inplace
        if isinstance(m, M.FeatureUpsample) and not phases:
            m.forward = m.reference
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net.to(memory_format=fmt)

    def run(x: torch.Tensor) -> None:
        M.CHUNK_BYTES = (32 << 20) if chunks else (1 << 62)
        os.environ["LAPSRN_WINOGRAD"] = "1" if wino else "0"
        with torch.inference_mode():
            net(x.contiguous(memory_format=fmt), 2)
        os.environ.pop("LAPSRN_WINOGRAD")

    return run


def nnpack_runner(net: torch.nn.Module):
    """The row before Winograd, with every 64->64 3x3 conv through torch._nnpack_spatial_convolution (NCHW)."""
    assert torch._nnpack_available()  # also initialises NNPACK, without which every call fails
    net = copy.deepcopy(net).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d) and m.weight.shape[:2] == (64, 64) and m.kernel_size == (3, 3):
            m.forward = lambda x, m=m: torch._nnpack_spatial_convolution(x.contiguous(), m.weight, m.bias, [1, 1], [1, 1])
    return variant(net, False, True, True, True)


def compiled_runner(net: torch.nn.Module):
    """The row before Winograd under torch.compile (Inductor, C++ codegen; needs a compiler at run time)."""
    net = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
    compiled = torch.compile(net, dynamic=False)

    def run(x: torch.Tensor) -> list[torch.Tensor]:  # returns the outputs, or the compiler drops the work
        M.CHUNK_BYTES = 32 << 20
        with torch.inference_mode(), winograd.disabled():
            return compiled(x.contiguous(memory_format=torch.channels_last), 2)

    return run


def onnx_runner(net: torch.nn.Module, x: torch.Tensor, threads: int, tmp: Path):
    """ONNX Runtime on the exported graph (our exporter, dynamic H/W)."""
    import onnxruntime as ort

    from lapsrn.export import export_onnx

    path = tmp / "lapsrn_x4.onnx"
    export_onnx(net, 2, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda _: session.run(None, {name: x.numpy()})


def profile(net: torch.nn.Module, x: torch.Tensor) -> list[tuple[str, float]]:
    """Seconds per layer kind of the shipped path (forward hooks)."""
    net = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
    spent: dict[str, float] = defaultdict(float)
    starts: dict[int, float] = {}

    def name_of(m: torch.nn.Module) -> str:
        if isinstance(m, M.FeatureUpsample):
            return "feature upsampler of the other levels (4 phase convs)"
        if isinstance(m, torch.nn.LeakyReLU):
            return "LeakyReLU (in place)"
        w = m.weight
        if isinstance(m, torch.nn.ConvTranspose2d):
            return "image upsampler (4x4 transposed conv, 1 channel)"
        return {64: "conv 64->64 3x3", 1: "conv 1->64 (input)"}.get(w.shape[1], "") if w.shape[0] == 64 else "conv 64->1 (residual) of the other levels"

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.LeakyReLU, M.FeatureUpsample)):
            if any(m is u.deconv for u in net.modules() if isinstance(u, M.FeatureUpsample)):
                continue
            m.register_forward_pre_hook(lambda mod, inp: starts.__setitem__(id(mod), time.perf_counter()))
            m.register_forward_hook(lambda mod, inp, out, k=name_of(m): spent.__setitem__(k, spent[k] + time.perf_counter() - starts[id(mod)]))
    real = {"conv3x3": winograd.conv3x3, "upsample2x": winograd.upsample2x}
    labels = {"conv3x3": "3x3 convs by Winograd F(4x4, 3x3): 64->64, and the last level's 64->1",
              "upsample2x": "last level's feature upsampler by Winograd F(4x4, 2x2)"}

    def timer(name: str):
        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            out = real[name](*args, **kwargs)
            spent[labels[name]] += time.perf_counter() - start
            return out
        return timed_call

    for name in real:
        setattr(winograd, name, timer(name))
    M.CHUNK_BYTES = 32 << 20
    with torch.inference_mode():
        net(x.contiguous(memory_format=torch.channels_last), 2)
        spent.clear()
        start = time.perf_counter()
        net(x.contiguous(memory_format=torch.channels_last), 2)
        total = time.perf_counter() - start
    for name, fn in real.items():
        setattr(winograd, name, fn)
    rows = sorted(spent.items(), key=lambda kv: -kv[1])
    return rows + [("everything else (adds, copies, layout changes, chunk seams)", total - sum(spent.values())), ("total", total)]


def winograd_agreement(net: torch.nn.Module, x: torch.Tensor) -> str:
    """How far the Winograd path's x4 output is from the plain convolutions', as floats and as 8-bit pixels."""
    net = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        fast = net(x.contiguous(memory_format=torch.channels_last), 2)[-1]
        with winograd.disabled():
            plain = net(x.contiguous(memory_format=torch.channels_last), 2)[-1]
    to8 = lambda t: (t.clamp(0, 1) * 255).round()  # noqa: E731
    differ = (to8(fast) != to8(plain)).float().mean().item()
    return (f"Winograd against plain convolutions on this image (x4 output): max |difference| "
            f"{(fast - plain).abs().max().item():.1e} on [0, 1]; rounded to 8 bits, {100 * differ:.4f} % of pixels "
            f"differ (by one level at most: {(to8(fast) - to8(plain)).abs().max().item():.0f}).")


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", type=Path, default=Path("docs/results/speed_candidates.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, _ = load(str(OFFICIAL))
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 384, 512), dtype=np.float32))
    steps = [
        ("plain PyTorch: NCHW, transposed conv, new tensor per activation, whole last level", (False, False, False, False)),
        ("+ channels-last memory format", (True, False, False, False)),
        ("+ transposed conv as four phase convs", (True, True, False, False)),
        ("+ in-place LeakyReLU", (True, True, True, False)),
        ("+ last level's upsample + residual in row chunks", (True, True, True, True)),
        ("+ Winograd: F(4x4, 3x3) for the 3x3 convs, F(4x4, 2x2) for the last level's upsampler (shipped)",
         (True, True, True, True, True)),
    ]
    lines = ["# CPU speed candidates", "", f"`python scripts/speed_candidates.py` ({args.threads} threads, torch "
             f"{torch.__version__}): the authors' LapSRN x4, one 512x384 LR luminance image to 2048x1536, network only, "
             "median of 3 runs. Each row adds one trick to the row above.", "", "| variant | seconds | vs plain |", "| --- | ---: | ---: |"]
    plain = None
    for label, flags in steps:
        seconds = timed(lambda run=variant(net, *flags): run(x))
        plain = plain or seconds
        lines.append(f"| {label} | {seconds:.2f} | {plain / seconds:.2f}x |")
        print(lines[-1], flush=True)
    lines += ["", winograd_agreement(net, x), "", "Candidates that lost (each instead of the Winograd row):", "", "| variant | seconds | vs plain |",
              "| --- | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as tmp:
        losers = [
            (f"ONNX Runtime {__import__('onnxruntime').__version__}, exported graph",
             lambda: onnx_runner(net, x, args.threads, Path(tmp))),
            ("NNPACK (PyTorch's bundled Winograd F(6x6, 3x3)) for the 64->64 convs", lambda: nnpack_runner(net)),
            ("torch.compile (Inductor)", lambda: compiled_runner(net)),
        ]
        for label, make in losers:
            try:
                seconds = timed(lambda run=make(): run(x))
                lines.append(f"| {label} | {seconds:.2f} | {plain / seconds:.2f}x |")
            except Exception as e:  # a candidate that cannot run here is a result too
                lines.append(f"| {label} | failed: {str(e).splitlines()[0][:80]} | - |")
            print(lines[-1], flush=True)
    lines += ["", "Per layer kind, shipped path (one run, forward hooks):", "", "| layer | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in profile(net, x)]
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
