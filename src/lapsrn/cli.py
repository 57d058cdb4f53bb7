"""The ``lapsrn`` command: upscale, evaluate, convert, export, train, report, plot, bench.

Every user error ends as one line on stderr and a non-zero exit status; no
traceback, and no output file is left half-written (writes are atomic).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_USAGE, EXIT_ERROR = 2, 1


class CLIError(Exception):
    """A problem to report to the user in one line."""


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


class OutputPath(type(Path())):
    """A path given after -o that remembers whether it was written as a folder ("big/"), which Path forgets."""

    def __new__(cls, text: str = "."):
        path = super().__new__(cls, text)
        path.folder = str(text).endswith(("/", os.sep))
        return path


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
        type=OutputPath,
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


def _upscaler(args: argparse.Namespace, model: str | None):
    """Load a model (None: the bundled default) into an Upscaler with the command's run options; this process
    keeps freed arrays for reuse (``engine.reuse_freed_memory``). The CPU engine's kernels are loaded now,
    before any progress bar, with a line when they are compiled (not under --quiet) and when they cannot
    be kept for the next run."""
    import lapsrn
    from lapsrn.engine import Network, native, reuse_freed_memory

    def notice(message: str, warning: bool) -> None:
        if warning or not getattr(args, "quiet", False):
            print(f"lapsrn: {message}", file=sys.stderr)

    native.notice = notice

    if args.tile is not None and args.tile < 8:
        raise CLIError(f"--tile must be at least 8 pixels, got {args.tile}")
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be at least 1, got {args.threads}")
    reuse_freed_memory()
    upscaler = lapsrn.load(
        model, tile=args.tile, max_memory=args.max_memory, device=args.device, half=args.half, threads=args.threads
    )
    if isinstance(upscaler.net, Network):
        native.functions()
    return upscaler


def _jobs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(input, output) pairs for a file or a folder input (this process's shard of a folder)."""
    from .io import IMAGE_SUFFIXES, output_format
    from .video import is_video

    src, dst = args.input, args.output
    if not src.exists():
        raise CLIError(f"{src}: no such file or folder")
    video_options = [f"--{k}" for k in ("codec", "crf", "preset") if getattr(args, k) is not None]
    if src.is_file() and is_video(src):
        return _video_job(args)
    if video_options:
        raise CLIError(f"{video_options[0]} is for video inputs; {src} is not one (mp4, m4v, mov, mkv, webm, avi)")
    if src.is_file():
        if args.shard is not None or args.recursive:
            raise CLIError(f"--{'shard' if args.shard is not None else 'recursive'} is for a folder; {src} is one file")
        if dst.is_dir() or getattr(dst, "folder", False):  # into a folder, named as a folder's outputs are
            out = Path(dst) / _output_name(Path(src.name), args.suffix, args.ext)
            output_format(out)
            return [(src, out)]
        if args.ext != "auto" or args.suffix:
            raise CLIError(
                "--ext and --suffix name folder outputs (give -o a folder, e.g. big/); for one file, write its name"
            )
        output_format(dst)
        return [(src, dst)]
    pattern = "**/*" if args.recursive else "*"
    files = sorted(p for p in src.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CLIError(f"{src}: no images found" + ("" if args.recursive else " (use --recursive for sub-folders)"))
    if dst.exists() and not dst.is_dir():
        raise CLIError(f"{dst}: exists and is not a folder")
    if not dst.exists() and dst.suffix.lower() in IMAGE_SUFFIXES:
        raise CLIError(f"{dst}: for a folder of images -o names a folder, and this looks like a file name")
    shard, count = _shard(args)
    rels = [f.relative_to(src) for f in files if in_shard(f.relative_to(src), shard, count)]
    return [(src / r, dst / _output_name(r, args.suffix, args.ext)) for r in rels]


def _video_job(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """The one (video, output video) pair, checked: a video becomes a video, with options made for one."""
    from .video import output_format

    if args.output.is_dir():
        raise CLIError(f"{args.output}: is a folder; give an output video name")
    output_format(args.output)
    image_only = {"--all-levels": args.all_levels, "--ext": args.ext != "auto", "--suffix": args.suffix}
    image_only.update({"--recursive": args.recursive, "--shard": args.shard is not None})
    image_only.update({"--quality": args.quality != 95, "--png-compression": args.png_compression != 1})
    for flag, used in image_only.items():
        if used:
            raise CLIError(f"{flag} is for images; it does not apply to a video")
    return [(args.input, args.output)]


def _output_name(rel: Path, suffix: str, ext: str) -> Path:
    """a/photo.jpg -> a/photo_x4.png for --suffix _x4 --ext png; --ext auto keeps the input's extension."""
    return rel.with_name(rel.stem + suffix + (rel.suffix if ext == "auto" else f".{ext}"))


def _shard(args: argparse.Namespace) -> tuple[int, int]:
    """(K, N) from --shard, else from RANK/WORLD_SIZE (torchrun, many launchers), else (0, 1).

    The flag wins over the environment so that a user can always say exactly what
    one process does, even inside a job that happens to set RANK.
    """
    if args.shard is not None:
        return args.shard
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return 0, 1
    try:
        return parse_shard(f"{rank}/{world}")
    except argparse.ArgumentTypeError:
        raise CLIError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE (or give --shard K/N)") from None


def in_shard(rel: Path, shard: int, count: int) -> bool:
    """Whether the file at relative path ``rel`` belongs to shard K of N.

    By a stable hash (SHA-256, not Python's salted ``hash``; CRC-32 spreads names that
    differ in one character badly) of the relative path, not by position in the listing:
    a file keeps its shard when others are added or removed between runs, so a
    rerun of one crashed shard with --skip-existing redoes exactly that shard's
    files, and every process decides alone, without a shared file list.
    """
    digest = hashlib.sha256(rel.as_posix().encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == shard


def _targets(dst: Path, args: argparse.Namespace) -> list[Path]:
    """Every file one job writes."""
    from .upscale import level_factors, level_path

    return [level_path(dst, f) for f in level_factors(args.scale)] if args.all_levels else [dst]


def _refuse_overwriting_inputs(jobs: list[tuple[Path, Path]], args: argparse.Namespace) -> None:
    """An output that is an input (same path, hard link, symlink, -o = -i) is refused unless --overwrite.

    Files are compared by device and inode, as cp and rsync do, so no spelling of a
    path (relative, ``..``, a link) slips through.
    """
    if args.overwrite:
        return
    if args.input.is_dir() and args.output.exists() and os.path.samefile(args.input, args.output):
        raise CLIError(
            f"{args.output}: is the input folder; outputs would replace the inputs (use another -o, or --overwrite)"
        )
    inputs = {(st.st_dev, st.st_ino) for st in (src.stat() for src, _ in jobs)}
    for src, dst in jobs:
        for target in _targets(dst, args):
            if target.exists() and (target.stat().st_dev, target.stat().st_ino) in inputs:
                raise CLIError(f"{target}: is an input file; refusing to replace it (use another -o, or --overwrite)")


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (kill, a scheduler's time limit) ends the run like Ctrl-C: temp file removed, one line."""
    raise KeyboardInterrupt


def cmd_upscale(args: argparse.Namespace) -> int:
    """lapsrn upscale: each output written atomically; a summary line for folders."""
    from .imaging import levels_for

    levels_for(args.scale)  # reject absurd scales before loading anything
    jobs = _jobs(args)
    _refuse_overwriting_inputs(jobs, args)
    video = _video_options(args)
    if video is None and args.quality != 95 and not any(_lossy(dst) for _, dst in jobs):
        print("lapsrn: warning: --quality applies to JPEG and WebP outputs; these are lossless", file=sys.stderr)
    if video is None and args.model is None and not args.quiet and any(_is_jpeg(src) for src, _ in jobs):
        print(
            "lapsrn: note: the default model sharpens JPEG compression blocks too; for JPEGs and noisy photos "
            "-m real is made to remove them",
            file=sys.stderr,
        )
    upscaler = _upscaler(args, args.model)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if video is not None:
            return _upscale_video(upscaler, args, video)
        return _upscale_all(upscaler, jobs, args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _lossy(dst: Path) -> bool:
    """Whether an output (or, with --all-levels, its levels) is written in a format --quality applies to."""
    return dst.suffix.lower() in (".jpg", ".jpeg", ".webp")


def _is_jpeg(path: Path) -> bool:
    return path.suffix.lower() in (".jpg", ".jpeg")


def _video_options(args: argparse.Namespace):
    """A video input's encoding options (``video.VideoOptions``), checked before the model loads; None for images.
    PyAV is imported here, so that without the extra the one-line hint comes before any work."""
    from .video import VideoOptions, is_video

    if not (args.input.is_file() and is_video(args.input)):
        return None
    options = VideoOptions(args.codec, args.crf, args.preset)
    options.resolved(args.output.suffix.lower())
    import av  # noqa: F401

    return options


def _upscale_video(upscaler, args: argparse.Namespace, options) -> int:
    """lapsrn upscale on a video: a progress bar of frames (fps, ETA), notes as one line each, and on Ctrl-C or
    SIGTERM where the finished segments are kept for the same command to resume."""
    from .video import upscale_video, work_folder

    bar = None

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=done - 1, unit="frame", dynamic_ncols=True, file=sys.stderr)
        bar.update(done - bar.n)

    def log(message: str) -> None:
        if not args.quiet:
            (bar.write if bar else print)(f"lapsrn: {message}", file=sys.stderr)

    if args.skip_existing and args.output.exists():
        print(f"lapsrn: {args.output} exists; skipped (--skip-existing)", file=sys.stderr)
        return 0
    try:
        result = upscale_video(upscaler, args.input, args.output, args.scale, options, progress, log)
    except KeyboardInterrupt:
        if bar:
            bar.close()
            bar = None
        folder = work_folder(args.output)
        if folder.is_dir():
            print(f"lapsrn: finished segments are kept in {folder}: the same command resumes", file=sys.stderr)
        raise
    finally:
        if bar:
            bar.total = max(bar.n, bar.total or 0) if sys.exc_info()[0] else bar.n  # an estimated total ends true
            bar.close()
    if not args.quiet:
        print(f"wrote {result.path} ({result.frames} frames upscaled)", file=sys.stderr)
    return 0


def _rows_bar():
    """A progress callback for one large image: a bar of LR rows, shown once the image runs in several bands."""
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            if done == total:  # one pass: nothing to show
                return
            from tqdm import tqdm

            bar = tqdm(total=total, unit="row", desc="bands", dynamic_ncols=True, file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update


WRITE_BEHIND_BYTES = 64 << 20  # a folder's outputs up to this size are written while the next image is upscaled


def _upscale_all(upscaler, jobs: list[tuple[Path, Path]], args: argparse.Namespace) -> int:
    """Write every job's outputs; in a folder a bad image is reported and skipped, not fatal.

    In a folder, an image's outputs (when small: WRITE_BEHIND_BYTES, and at most an eighth of the
    memory budget) are encoded and written on a second thread while the network runs the next
    image, whose budget leaves room for them; one image at a time, so at most one image's outputs
    wait. A run stopped meanwhile lets that write finish and reports it: its file is whole.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .io import ImageError, dropped_by_format, remove_stale_temps
    from .upscale import held_bytes, upscale_outputs, write_outputs

    folder = args.input.is_dir()
    written = skipped = failed = 0
    cleaned: set[Path] = set()
    progress = None
    if folder and not args.quiet:
        from tqdm import tqdm

        progress = tqdm(total=len(jobs), unit="img", dynamic_ncols=True, file=sys.stderr)

    def say(message: str, error: bool = False) -> None:
        """One line to stderr, above the progress bar if there is one; --quiet keeps only errors."""
        if progress:
            progress.write(message, file=sys.stderr)
        elif error or not args.quiet:
            print(message, file=sys.stderr)

    def failure(src: Path, e: Exception) -> None:
        """A folder skips an image that cannot be read, upscaled or written; a single image is the error."""
        nonlocal failed
        if not folder:
            raise e
        failed += 1
        reason = f"out of memory ({e})" if isinstance(e, MemoryError) else str(e)
        say(f"lapsrn: skipped {src}: {reason}", error=True)

    def settle(src: Path, writes: Callable[[], list[Path]]) -> None:
        """Run or wait for one image's writes (``writes`` returns the paths written) and report the outcome."""
        nonlocal written
        try:
            paths = writes()
        except (MemoryError, ImageError, ValueError) as e:
            failure(src, e)
        else:
            written += 1
            for path in paths:
                say(f"wrote {path}")
        if progress:
            progress.update(1)

    if not folder and not args.quiet:
        upscaler.progress = _rows_bar()
    budget = upscaler.max_memory
    writer = ThreadPoolExecutor(1, thread_name_prefix="lapsrn-write") if folder else None
    pending: tuple[Path, Callable[[], list[Path]]] | None = None  # the image being written meanwhile

    def written_before() -> None:
        """Wait for the image being written, report it, and give its outputs' bytes back to the budget."""
        nonlocal pending
        if pending:
            (src, result), pending = pending, None
            upscaler.max_memory = budget
            settle(src, result)

    try:
        for src, dst in jobs:
            if dst.parent not in cleaned:  # a killed earlier run's temp files: its pid is dead
                dst.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_temps(dst.parent)
                cleaned.add(dst.parent)
            if args.skip_existing and all(t.exists() for t in _targets(dst, args)):
                skipped += 1
                if progress:
                    progress.update(1)
                continue
            try:
                outputs = upscale_outputs(upscaler, src, dst, args.scale, args.all_levels)
            except (MemoryError, ImageError, ValueError) as e:
                written_before()  # reports stay in the images' order
                failure(src, e)
                if progress:
                    progress.update(1)
                continue
            written_before()
            for out, path in outputs:
                for lost in dropped_by_format(out, path):
                    say(f"lapsrn: warning: {path}: written without {lost}; write .png or .tif to keep it", error=True)
            size = held_bytes(outputs)
            if writer and size <= min(WRITE_BEHIND_BYTES, budget // 8):
                pending = (src, writer.submit(write_outputs, outputs, args.quality, args.png_compression).result)
                upscaler.max_memory = budget - size  # the next image runs beside these outputs
            else:
                settle(src, lambda: write_outputs(outputs, args.quality, args.png_compression))
        written_before()
    finally:
        if writer:
            writer.shutdown(wait=True)  # an interrupted run's last write completes, and is reported
            written_before()
    if progress:
        progress.close()
    if folder:
        print(
            f"lapsrn: {written} written, {skipped} skipped (already there), {failed} of {len(jobs)} images failed",
            file=sys.stderr,
        )
    return EXIT_ERROR if failed else 0


def _degrade_steps(text: str | None) -> list | None:
    """--degrade's steps (``degrade.Step``), or None without the option; a typo is one error line."""
    if not text:
        return None
    from .degrade import parse

    try:
        return parse(text)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _check_datasets(folders: list[Path]) -> None:
    """Each -d is a folder of HR images: a missing one, or a file, is one line before any work."""
    for d in folders:
        if d.is_file():
            raise CLIError(f"{d}: is a file; -d takes a folder of HR images")
        if not d.is_dir():
            raise CLIError(f"{d}: no such folder")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """lapsrn evaluate: one row per (dataset, scale, method)."""
    from .evaluate import run_evaluation

    scales = args.scale or [2, 4, 8]
    for s in scales:
        if s < 2 or s > 64:
            raise CLIError(f"evaluation scale must be an integer in 2..64, got {s}")
    _check_datasets(args.dataset)
    if args.json:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CLIError(f"--json {args.json}: cannot make its folder ({e.strerror})") from None
    degrade = _degrade_steps(args.degrade)
    upscaler = _upscaler(args, args.model)
    name = Path(args.model).name if args.model else "lapsrn default"
    report = run_evaluation([(name, upscaler)], args.dataset, scales, not args.no_bicubic, degrade)
    print(report.table(hf=args.texture))
    cells = "PSNR (dB) / SSIM" + (" / fine detail relative to the ground truth" if args.texture else "")
    print(f"lapsrn: table cells: {cells}", file=sys.stderr)  # stdout stays the markdown table alone
    if args.json:
        from .io import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report.to_json(), indent=2))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """lapsrn convert X.mat -o X.safetensors."""
    from .weights import convert

    if args.src.suffix.lower() != ".mat":
        raise CLIError(f"{args.src}: convert takes the authors' MatConvNet weights, a .mat file")
    if args.output.suffix != ".safetensors":
        raise CLIError(f"{args.output}: output must end in .safetensors")
    if args.output.exists() and not args.overwrite:
        raise CLIError(f"{args.output}: exists; refusing to replace it (use --overwrite)")
    spec = convert(args.src, args.output)
    print(
        f"wrote {args.output}: {spec.arch} D{spec.depth} levels {spec.levels}"
        + (f" R{spec.recursions} {spec.skip}" if spec.arch == "MSLapSRN" else "")
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """lapsrn export --onnx: what is missing of the extra is said at once, not a module at a time."""
    import importlib.util

    missing = [m for m in ("torch", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise CLIError(f"lapsrn export needs {', '.join(missing)}: {install_hint('export')}")
    from .export import export_onnx
    from .weights import load

    net, spec = load(args.model)
    levels = args.levels or spec.levels
    if not 1 <= levels <= 6:
        raise CLIError(f"--levels must be 1..6, got {levels}")
    err = export_onnx(net, levels, args.onnx)
    print(f"wrote {args.onnx}: x{2**levels} pyramid, dynamic H/W, max |ONNX - PyTorch| = {err:.1e}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """lapsrn train: the config is checked in full before torch is imported or anything is written."""
    from dataclasses import fields

    from .config import TrainConfig, make_config

    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    if args.no_val:
        if args.val_dirs:
            raise CLIError("--no-val and --val-dirs contradict each other: choose one")
        overrides["val_dirs"] = []
    cfg = make_config(args.preset, args.config, **overrides)
    if args.stop_at is not None and not 0 < args.stop_at <= cfg.steps:
        raise CLIError(f"--stop-at must be a step in 1..{cfg.steps} (--steps), got {args.stop_at}")

    from .training import TrainingInterrupted, train

    try:
        out, step = train(cfg, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet, stop_at=args.stop_at)
    except TrainingInterrupted as e:
        print(f"lapsrn: {e}", file=sys.stderr)
        return 128 + e.signum
    if args.stop_at is not None and step > args.stop_at:
        print(f"{out} is already at step {step}, past --stop-at {args.stop_at}: nothing trained")
        return 0
    if args.stop_at is not None and args.stop_at < cfg.steps:
        print(f"stopped at step {args.stop_at} of {cfg.steps}: {out}/model.safetensors (--resume continues)")
        return 0
    print(f"done: {out}/model.safetensors")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """lapsrn report."""
    from .evaluate import image_files, run_evaluation
    from .imaging import super_resolve
    from .io import atomic_path, read_image
    from .report import Method, build_report

    if args.output.suffix.lower() not in (".html", ".htm"):
        raise CLIError(f"{args.output}: report output must end in .html")
    _check_datasets(args.dataset)
    scales = args.scale or [4]
    degrade = _degrade_steps(args.degrade)
    models = []
    for m in args.model or ["default"]:
        models.append(
            ("lapsrn default" if m == "default" else Path(m).name, _upscaler(args, None if m == "default" else m))
        )
    report = run_evaluation(models, args.dataset, scales, degrade=degrade)
    first = [
        r
        for r in report.rows
        if r.method == models[0][0] and r.dataset == args.dataset[0].name and r.scale == scales[0]
    ][0]
    base = {
        s.image: s.psnr
        for r in report.rows
        if r.method == "bicubic" and r.dataset == first.dataset and r.scale == first.scale
        for s in r.scores
    }
    if args.images:
        chosen = args.images
    else:  # where the first model gains most over bicubic
        chosen = [s.image for s in sorted(first.scores, key=lambda s: base[s.image] - s.psnr)[: args.crops]]
    files = {p.stem: p for d in reversed(args.dataset) for p in image_files(d)}  # --images from any dataset
    missing = [c for c in chosen if c not in files]
    if missing:
        raise CLIError(f"no image named {missing[0]} in {', '.join(str(d) for d in args.dataset)}")
    crops = {c: read_image(files[c]).pixels for c in chosen}
    methods = [Method(n, lambda lr, s, up=up: super_resolve(up, lr, s)) for n, up in models]
    page = build_report(report.rows, crops, methods, scales[0], args.log, degrade, args.texture)
    with atomic_path(args.output) as tmp:
        tmp.write_text(page, encoding="utf-8")
    print(report.table(hf=args.texture))
    print(f"wrote {args.output} ({len(page) / 1e6:.1f} MB)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """lapsrn models: one row per bundled model, read from its card and its (sha256-checked) file."""
    from .weights import DEFAULT_MODEL, PACKAGE_WEIGHTS, bundled_card, bundled_names, read

    print("| name | for | architecture | parameters | scales | size | trained | Set5 x4 PSNR |")
    print("|---|---|---|---|---|---|---|---|")
    for name in sorted(bundled_names(), key=lambda n: n != DEFAULT_MODEL):  # the default first
        card = bundled_card(name)
        spec, state = read(name)
        arch = f"{spec.arch} D{spec.depth}" + (f"R{spec.recursions} {spec.skip}" if spec.arch == "MSLapSRN" else "")
        psnr = next((v[0] for k, v in card.get("metrics", {}).items() if k == f"Set5 x4 {name}"), None)
        psnr = psnr or next((v[0] for k, v in card.get("metrics", {}).items() if k == "Set5 x4 lapsrn default"), None)
        label = f"{name} (default)" if name == DEFAULT_MODEL else name
        size = (PACKAGE_WEIGHTS / card["file"]).stat().st_size / 1e6
        print(
            f"| {label} | {card.get('use', '')} | {arch} | {sum(v.size for v in state.values()):,} | "
            f"{', '.join(f'x{s}' for s in card['scales'])} | {size:.2f} MB | {card['training_data']} | "
            f"{f'{psnr:.2f} dB' if psnr else 'not scored'} |"
        )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """lapsrn plot LOG -o PNG."""
    from .plot import plot_logs

    plot_logs(args.log, args.output)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """lapsrn bench."""
    import os

    from .bench import bench

    datasets = args.dataset or [args.shared / "datasets/test/Set14", args.shared / "datasets/test/BSDS100"]
    for d in [*datasets, args.shared / "weights/official"]:
        if not d.is_dir():
            raise CLIError(f"{d}: no such folder (bench needs the test sets and official weights; see --shared)")
    command = "lapsrn bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "lapsrn bench"
    rows = bench(
        datasets,
        args.scale or [2, 4, 8],
        args.shared,
        args.threads or os.cpu_count() or 1,
        args.big,
        args.rounds,
        args.output,
        command.strip(),
        args.limit,
        args.full,
        progress=lambda m: print(m, file=sys.stderr),
        wall_rounds=args.wall_rounds,
        video_frames=args.video_frames,
    )
    print(f"wrote {args.output} ({len(rows)} rows)")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """lapsrn app: serve the page until Ctrl-C."""
    if not 0 < args.port < 65536:
        raise CLIError(f"--port must be from 1 to 65535, got {args.port}")
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be at least 1, got {args.threads}")
    import gradio  # noqa: F401 -- the extra's one-line hint before anything starts

    from .app import serve

    serve(args.host, args.port, args.share, args.max_memory, args.threads)
    return 0


def install_hint(extra: str) -> str:
    """How to add an extra: from a clone (an editable install beside requirements/ci.txt), with the pins that
    keep pip off a multi-GB CUDA build of torch; else from the index."""
    clone = Path(__file__).resolve().parents[2]
    if (clone / "requirements" / "ci.txt").is_file() and (clone / "pyproject.toml").is_file():
        return f"pip install -c {clone / 'requirements/ci.txt'} -e '{clone}[{extra}]'"
    return f"pip install 'lapsrn[{extra}]'"


EXTRAS = {
    "torch": "torch",
    "onnx": "export",
    "onnxruntime": "export",
    "matplotlib": "plot",
    "cv2": "bench",
    "av": "video",
    "gradio": "app",
}  # module -> extra

COMMANDS = {
    "upscale": cmd_upscale,
    "evaluate": cmd_evaluate,
    "convert": cmd_convert,
    "export": cmd_export,
    "train": cmd_train,
    "report": cmd_report,
    "plot": cmd_plot,
    "bench": cmd_bench,
    "models": cmd_models,
    "app": cmd_app,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a subcommand, turning expected failures into one line and exit 1.

    ImageError and WeightsError are ValueErrors; catching the base keeps torch
    out of the import path of ``lapsrn --help``. A command that needs an
    optional dependency which is missing names the extra to install.
    """
    args = build_parser().parse_args(argv)
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
