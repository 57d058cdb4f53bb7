"""The ``lapsrn`` command's options and entry point: argparse for every subcommand, and ``main``.

What each subcommand does with its options is in ``commands``. Every user error ends as one line
on stderr and a non-zero exit status; no traceback, and no output file is left half-written.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .commands import COMMANDS, EXIT_ERROR, EXTRAS, CLIError, install_hint

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line instead of the whole usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_bytes(text: str) -> int:
    """'2G', '512M', '1.5GB' -> bytes. A bare number is refused: 1500 could mean bytes or MB."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT])i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a memory size with a unit: {text!r} (try 2G or 512M)")
    unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * unit)


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' with 0 <= K < N -> (K, N)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise argparse.ArgumentTypeError(f"--shard must be K/N with 0 <= K < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse_quality(text: str) -> int:
    """JPEG/WebP quality, an integer 1..100."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"--quality must be an integer from 1 to 100, got {text!r}")
    return int(text)


def parse_png_compression(text: str) -> int:
    """zlib level 0..9."""
    if not text.strip().isdigit() or not 0 <= int(text) <= 9:
        raise argparse.ArgumentTypeError(f"--png-compression must be an integer from 0 to 9, got {text!r}")
    return int(text)


def parse_scale(text: str) -> float:
    """A finite number > 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"scale must be a number, got {text!r}") from None
    if not (value > 1 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"scale must be greater than 1, got {text}")
    return value


def _add_model_args(p: argparse.ArgumentParser, model: bool = True) -> None:
    if model:
        p.add_argument(
            "-m",
            "--model",
            help="'default' or another bundled name (any case), a .safetensors file or "
            "an official .mat (default: the bundled default)",
        )
    p.add_argument("-t", "--tile", type=int, default=None, help="LR tile side in pixels (default: automatic)")
    p.add_argument(
        "--max-memory",
        type=parse_bytes,
        default="672M",
        help="working memory for the input, output and feature maps, with a unit (K, M, G or T: 512M, "
        "2G); larger images run in bands or tiles (default 672M)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument(
        "--device",
        default="auto",
        help="auto (default: CUDA if PyTorch sees a GPU, else the CPU engine), cpu, cuda, cuda:N or mps",
    )
    p.add_argument("--half", action="store_true", help="float16 on CUDA")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """lapsrn train's flags: a few of its own, then one per TrainConfig field with its help, type and choices."""
    from dataclasses import fields
    from typing import Literal, get_args, get_origin, get_type_hints

    from .config import DEFAULT_PRESET, MAY_CHANGE_ON_RESUME, Preset, TrainConfig, field_help

    p.add_argument(
        "--preset",
        choices=get_args(Preset),
        default=DEFAULT_PRESET,
        help=f"recipe the other flags start from (default: {DEFAULT_PRESET}; see docs/TRAINING.md)",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="JSON file of TrainConfig fields, applied after the preset and before "
        "the flags (a run's OUT/config.json works)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.pt; refused when a setting "
        f"that changes the result differs (only {', '.join(MAY_CHANGE_ON_RESUME)} may)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the training run already in OUT")
    p.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="checkpoint and stop after STEP, on the whole run's schedule (a chunk of a run; --resume continues)",
    )
    p.add_argument("--no-val", action="store_true", help="no validation folders (the same as an empty --val-dirs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    hints = get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        hint, kw = hints[f.name], {"default": None, "help": field_help(f)}
        if get_origin(hint) is Literal:
            kw["choices"] = get_args(hint)
        elif get_origin(hint) is list:
            kw.update(type=get_args(hint)[0], nargs="*" if f.name == "val_dirs" else "+", metavar=f.name[:-1].upper())
        else:
            kw["type"] = hint
        p.add_argument(f"--{f.name.replace('_', '-')}", **kw)


class VersionAction(argparse.Action):
    """--version, looked up only when asked: importlib.metadata costs every other command a tenth of a second."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"lapsrn {_version()}")
        parser.exit()


def _version() -> str:
    """The installed package's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lapsrn")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """argparse tree of all subcommands."""
    parser = Parser(prog="lapsrn", description="LapSRN / MS-LapSRN image super-resolution")
    parser.add_argument("--version", action=VersionAction, nargs=0, help="show lapsrn's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    from .weights import DEFAULT_MODEL, bundled_names

    up = sub.add_parser(
        "upscale",
        help="upscale an image or a folder of images",
        epilog=f"models (-m, any case): default (= {DEFAULT_MODEL}), {', '.join(bundled_names())}, "
        "or a .safetensors / official .mat file",
    )
    up.add_argument("-i", "--input", required=True, type=Path, help="image file, folder, or video file (mp4, mkv, ...)")
    up.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file, or folder (an existing one, or a name ending in /; always for a folder INPUT)",
    )
    up.add_argument(
        "-s",
        "--scale",
        type=parse_scale,
        default=4.0,
        help="2, 4, 8 use the pyramid directly; others resize (default 4)",
    )
    up.add_argument(
        "--all-levels",
        action="store_true",
        help="also write every pyramid level below the scale: NAME_x2, NAME_x4, ..., NAME_xSCALE",
    )
    up.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    up.add_argument("--skip-existing", action="store_true", help="leave outputs that already exist (cheap reruns)")
    up.add_argument(
        "--overwrite",
        action="store_true",
        help="allow an output to replace an input file (refused by default: same path, hard link, -o = -i)",
    )
    up.add_argument(
        "--shard",
        type=parse_shard,
        metavar="K/N",
        help="process only part K of N (0 <= K < N) of a folder; default: RANK/WORLD_SIZE when both are set"
        " (torchrun sets them), else all. Slurm array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT",
    )
    up.add_argument(
        "--ext",
        choices=["auto", "png", "jpg", "webp"],
        default="auto",
        help="folder output format (default auto: the input's format)",
    )
    up.add_argument(
        "--suffix", default="", help="added to folder output names before the extension, e.g. _x4 (default none)"
    )
    up.add_argument("--quality", type=parse_quality, default=95, help="JPEG/WebP quality 1-100 (default 95)")
    up.add_argument(
        "--png-compression",
        type=parse_png_compression,
        default=1,
        help="PNG zlib level 0-9 (default 1: fast, as OpenCV; 6 makes files a little smaller and is much slower)",
    )
    up.add_argument("--quiet", action="store_true", help="no progress bar and no 'wrote PATH' lines")
    video = up.add_argument_group("video (extra: lapsrn[video])")
    video.add_argument("--codec", choices=["h264", "hevc", "vp9", "av1"], help="default: vp9 for .webm, else h264")
    video.add_argument(
        "--crf", type=int, help="constant quality, lower is better (default: h264 18, hevc 20, vp9 24, av1 28)"
    )
    video.add_argument(
        "--preset", help="encoder speed: h264/hevc ultrafast..veryslow (default medium), vp9 0-8 (4), av1 0-13 (8)"
    )
    _add_model_args(up)

    ev = sub.add_parser("evaluate", help="PSNR/SSIM with the papers' protocol")
    ev.add_argument("-d", "--dataset", action="append", required=True, type=Path, help="folder of HR images (repeat)")
    ev.add_argument("-s", "--scale", action="append", type=int, help="scale (repeat; default 2, 4, 8)")
    ev.add_argument("--json", type=Path, help="write per-image results here")
    ev.add_argument("--no-bicubic", action="store_true", help="skip the bicubic baseline row")
    ev.add_argument(
        "--texture",
        action="store_true",
        help="add to each cell the high-frequency energy relative to the ground truth's (1 = as much fine detail)",
    )
    ev.add_argument(
        "--degrade",
        help="degrade the protocol's LR before upscaling, steps in order: jpeg:Q (quality), noise:S (sigma, "
        "8-bit levels, seeded per image), blur:S (Gaussian sigma, LR px); e.g. noise:5,jpeg:90",
    )
    _add_model_args(ev)

    cv = sub.add_parser("convert", help="official MatConvNet .mat -> lapsrn .safetensors")
    cv.add_argument("src", type=Path)
    cv.add_argument("-o", "--output", required=True, type=Path)
    cv.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    ex = sub.add_parser("export", help="ONNX graph with dynamic height/width, parity-checked against PyTorch")
    ex.add_argument("--onnx", required=True, type=Path, help="output .onnx file")
    ex.add_argument("-m", "--model", help="bundled name, .safetensors or official .mat (default: bundled)")
    ex.add_argument("--levels", type=int, default=None, help="pyramid levels in the graph (default: the model's)")

    tr = sub.add_parser("train", help="train LapSRN / MS-LapSRN (see docs/TRAINING.md)")
    _add_train_args(tr)

    rp = sub.add_parser("report", help="self-contained HTML comparison: tables, zoomed crops, training curve")
    rp.add_argument("-d", "--dataset", action="append", required=True, type=Path, help="folder of HR images (repeat)")
    rp.add_argument("-s", "--scale", action="append", type=int, help="scale (repeat; default 4)")
    rp.add_argument(
        "-m", "--model", action="append", help="model to compare (repeat; 'default' = bundled; default: bundled)"
    )
    rp.add_argument("--crops", type=int, default=2, help="images shown as zoomed crops (default 2)")
    rp.add_argument("--images", nargs="+", help="names (stems) of the images to crop instead, from any -d folder")
    rp.add_argument("--log", type=Path, help="training log.csv to plot in the report")
    rp.add_argument("--texture", action="store_true", help="add the high-frequency energy ratio to the tables")
    rp.add_argument("--degrade", help="degrade the protocol's LR first, as for evaluate (e.g. jpeg:75)")
    rp.add_argument("-o", "--output", required=True, type=Path)
    _add_model_args(rp, model=False)

    be = sub.add_parser("bench", help="speed + quality vs bicubic, official weights and OpenCV (docs/BENCHMARKS.md)")
    be.add_argument(
        "-d", "--dataset", action="append", type=Path, help="folder of HR images (repeat; default Set14, BSDS100)"
    )
    be.add_argument("-s", "--scale", action="append", type=int, help="scale (repeat; default 2, 4, 8)")
    be.add_argument(
        "--shared", type=Path, default=Path("../shared"), help="folder with weights/official and peers/opencv"
    )
    be.add_argument("--big", type=int, default=1024, help="side of the extra speed-only x4 LR image (0 = none)")
    be.add_argument("--rounds", type=int, default=1, help="interleaved repetitions of every case (default 1)")
    be.add_argument("--limit", type=int, default=None, help="first N images of each dataset only")
    be.add_argument("--full", action="store_true", help="run the slow D5R8 on every case, not just Set14")
    be.add_argument("--threads", type=int, default=None, help="threads per method (default: all cores)")
    be.add_argument(
        "--wall-rounds", type=int, default=3, help="timed runs of each whole-process job at x4 (0 = none; default 3)"
    )
    be.add_argument(
        "--video-frames",
        type=int,
        default=48,
        help="frames of the 640x360 clip timed whole-process at x2 (0 = none; needs lapsrn[video]; default 48)",
    )
    be.add_argument("-o", "--output", type=Path, default=Path("docs/BENCHMARKS.md"))

    sub.add_parser("models", help="the bundled models: name, architecture, size, training, Set5 x4 PSNR")

    ap = sub.add_parser("app", help="a local page: drop images, compare models with sliders, download (lapsrn[app])")
    ap.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    ap.add_argument("--share", action="store_true", help="also make a temporary public link through Gradio's servers")
    ap.add_argument(
        "--max-memory", type=parse_bytes, default="672M", help="working memory per image, as for upscale (default 672M)"
    )
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")

    pl = sub.add_parser("plot", help="training curves PNG from one or more training log.csv")
    pl.add_argument("log", type=Path, nargs="+")
    pl.add_argument("-o", "--output", required=True, type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a subcommand, turning expected failures into one line and exit 1.

    ImageError and WeightsError are ValueErrors; catching the base keeps torch
    out of the import path of ``lapsrn --help``. A command that needs an
    optional dependency which is missing names the extra to install.
    """
    args = build_parser().parse_args(argv)
    from .io import configure_process

    configure_process()
    try:
        return COMMANDS[args.command](args)
    except ModuleNotFoundError as e:
        extra = EXTRAS.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"lapsrn: error: lapsrn {args.command} needs {e.name}: {install_hint(extra)}", file=sys.stderr)
        return EXIT_ERROR
    except (CLIError, ValueError, RuntimeError, MemoryError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, MemoryError):
            msg = f"out of memory: {msg} (try a smaller --tile or --max-memory)"
        print(f"lapsrn: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("lapsrn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
