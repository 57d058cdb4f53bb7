"""What each ``lapsrn`` subcommand does with its parsed options: the library called, the lines printed.

The work itself is in the library (``batch`` for folders, ``video``, ``evaluate``, ``training``, ...);
here are its progress bars, its messages and the checks only a command line needs. Each ``cmd_*``
returns the exit status; ``CLIError`` is a problem to report in one line (``cli.main`` prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

EXIT_ERROR = 1


class CLIError(Exception):
    """A problem to report to the user in one line."""


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


def _jobs(args: argparse.Namespace, options) -> list[tuple[Path, Path]]:
    """(input, output) pairs for a file, a folder (this process's shard) or a video input, checked."""
    from .batch import plan, refuse_overwriting_inputs
    from .video import is_video

    src, dst = args.input, args.output
    if not src.exists():
        raise CLIError(f"{src}: no such file or folder")
    video_options = [f"--{k}" for k in ("codec", "crf", "preset") if getattr(args, k) is not None]
    if src.is_file() and is_video(src):
        jobs = _video_job(args)
        refuse_overwriting_inputs(src, dst, jobs, options)
        return jobs
    if video_options:
        raise CLIError(f"{video_options[0]} is for video inputs; {src} is not one (mp4, m4v, mov, mkv, webm, avi)")
    return plan(src, dst, options, into_folder=args.output_text.endswith(("/", os.sep)))


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


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (kill, a scheduler's time limit) ends the run like Ctrl-C: temp file removed, one line."""
    raise KeyboardInterrupt


def cmd_upscale(args: argparse.Namespace) -> int:
    """lapsrn upscale: each output written atomically; a summary line for folders."""
    from .batch import BatchOptions
    from .colour import levels_for

    levels_for(args.scale)  # reject absurd scales before loading anything
    args.output_text, args.output = args.output, Path(args.output)
    names = ("scale", "all_levels", "suffix", "ext", "recursive", "shard", "skip_existing", "overwrite", "quality")
    options = BatchOptions(**{name: getattr(args, name) for name in names}, png_compression=args.png_compression)
    jobs = _jobs(args, options)
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
        return _upscale_all(upscaler, jobs, args, options)
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


BAR_DELAY = 1.0  # seconds: an image done sooner shows no bar


def _rows_bar() -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """Progress for one image, and what closes it: a bar of LR rows through the network, all its levels and
    tiles, with the output composed (and a large one written) as the rows come; 'writing' once the network is
    done and a whole output is encoded. Shown only for an image that takes more than a second."""
    bar, start = None, time.monotonic()

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            if done == total or time.monotonic() - start < BAR_DELAY:
                return
            from tqdm import tqdm

            bar = tqdm(total=total, unit="row", desc="upscaling", dynamic_ncols=True, file=sys.stderr, leave=False)
        if done < bar.n:  # a second pass (--all-levels at a scale not a power of two)
            bar.reset(total)
            bar.set_description("upscaling")
        bar.update(done - bar.n)
        if done == total:
            bar.set_description("writing")

    def close() -> None:
        nonlocal bar
        if bar is not None:
            bar.close()
            bar = None

    return update, close


def _upscale_all(upscaler, jobs: list[tuple[Path, Path]], args: argparse.Namespace, options) -> int:
    """Run the jobs (``batch.run``): a bar of images for a folder, where a bad image is reported and skipped;
    a bar of rows for one large image, whose failure is the command's error."""
    from .batch import run

    folder = args.input.is_dir()
    bar = None
    if folder and not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="img", dynamic_ncols=True, file=sys.stderr)

    close_rows = None

    def log(line: str, problem: bool) -> None:
        """Written files unless --quiet, problems always ("lapsrn: ..."); above the bar if there is one."""
        line = f"lapsrn: {line}" if problem else line
        if close_rows:  # one image: its bar ends where its lines begin
            close_rows()
        if bar:
            bar.write(line, file=sys.stderr)
        elif problem or not args.quiet:
            print(line, file=sys.stderr)

    if not folder and not args.quiet:
        upscaler.progress, close_rows = _rows_bar()
    try:
        result = run(
            upscaler, jobs, options, folder, log, (lambda done, total: bar.update(done - bar.n)) if bar else None
        )
    finally:
        if bar:
            bar.close()
        if close_rows:
            close_rows()
    if folder:
        print(f"lapsrn: {result.summary()}", file=sys.stderr)
    return EXIT_ERROR if result.failed else 0


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
    from .colour import super_resolve
    from .evaluate import image_files, run_evaluation
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
