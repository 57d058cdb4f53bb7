"""Upscaling many image files: a folder planned into (input, output) jobs, then run one image at a time.

``lapsrn upscale -i folder`` and ``Upscaler.upscale_folder`` both run here: the plan names every
output (``--suffix``, ``--ext``), keeps this process's shard of the folder, and refuses to write over
an input; the run writes each image's outputs atomically, writes a small image's outputs while the
network runs the next image, and reports a bad image and goes on. Lines and progress go to callbacks,
so the command prints them and the API may keep or drop them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .io import IMAGE_SUFFIXES, ImageError, dropped_by_format, output_format, remove_stale_temps
from .memory import WRITE_BEHIND_BYTES
from .pictures import held_bytes, level_factors, level_path, stream_file, streamed, upscale_outputs, write_outputs

if TYPE_CHECKING:
    from .tiling import Tiler

Job = tuple[Path, Path]  # an input image and the output path it is written to (--all-levels: the last level's)
EXTENSIONS = ("auto", "png", "jpg", "webp", "tif", "bmp")  # --ext: auto keeps each input's own


class BatchError(ValueError):
    """A request that cannot be planned (no images, an output that would replace an input): one line."""


@dataclass(frozen=True)
class BatchOptions:
    """What a run writes and how; the command's flags of the same names.

    ``shard`` (K, N) keeps the files of shard K of N (``in_shard``); None takes it from RANK and
    WORLD_SIZE when a launcher set them, else the whole folder.
    """

    scale: float = 4.0
    all_levels: bool = False
    suffix: str = ""
    ext: str = "auto"
    recursive: bool = False
    shard: tuple[int, int] | None = None
    skip_existing: bool = False
    overwrite: bool = False
    quality: int = 95  # JPEG and WebP
    png_compression: int = 1  # zlib level 0-9: 1 writes large PNGs several times faster than 6, a little larger

    def __post_init__(self) -> None:
        if self.ext not in EXTENSIONS:
            raise BatchError(f"ext must be one of {', '.join(EXTENSIONS)}, got {self.ext!r}")
        if not 1 <= self.quality <= 100:
            raise BatchError(f"quality must be 1..100, got {self.quality}")
        if not 0 <= self.png_compression <= 9:
            raise BatchError(f"png_compression must be 0..9, got {self.png_compression}")
        if self.shard is not None and not 0 <= self.shard[0] < self.shard[1]:
            raise BatchError(f"shard must be (K, N) with 0 <= K < N, got {self.shard}")


@dataclass
class BatchResult:
    """What a run did: the files written, images skipped because their outputs existed, and failures."""

    written: list[Path] = field(default_factory=list)  # every file, each level's with all_levels
    images: int = 0  # images whose outputs were written
    skipped: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, one-line reason)
    total: int = 0

    def summary(self) -> str:
        return (
            f"{self.images} written, {self.skipped} skipped (already there), {len(self.failed)} of {self.total} "
            "images failed"
        )


def output_name(rel: Path, suffix: str, ext: str) -> Path:
    """a/photo.jpg -> a/photo_x4.png for --suffix _x4 --ext png; --ext auto keeps the input's extension."""
    return rel.with_name(rel.stem + suffix + (rel.suffix if ext == "auto" else f".{ext}"))


def launcher_shard() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) when a launcher (torchrun, Slurm wrappers) set both, else (0, 1)."""
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return 0, 1
    if not (rank.isdigit() and world.isdigit() and int(rank) < int(world)):
        raise BatchError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE (or give --shard K/N)")
    return int(rank), int(world)


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


def plan_file(src: Path, dst: Path, options: BatchOptions, into_folder: bool = False) -> list[Job]:
    """The one job of a single image: into ``dst``, or into the folder ``dst`` named as a folder's outputs are
    (``into_folder``, or ``dst`` an existing folder)."""
    if options.shard is not None or options.recursive:
        raise BatchError(
            f"--{'shard' if options.shard is not None else 'recursive'} is for a folder; {src} is one file"
        )
    if dst.is_dir() or into_folder:
        out = dst / output_name(Path(src.name), options.suffix, options.ext)
        output_format(out)
        return [(src, out)]
    if options.ext != "auto" or options.suffix:
        raise BatchError(
            "--ext and --suffix name folder outputs (give -o a folder, e.g. big/); for one file, write its name"
        )
    output_format(dst)
    return [(src, dst)]


def plan_folder(src: Path, dst: Path, options: BatchOptions) -> list[Job]:
    """Every image of the folder ``src`` (sub-folders with ``recursive``) in this process's shard, and where its
    output goes under ``dst``: the same relative path, renamed by ``suffix`` and ``ext``."""
    pattern = "**/*" if options.recursive else "*"
    files = sorted(p for p in src.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BatchError(
            f"{src}: no images found" + ("" if options.recursive else " (use --recursive for sub-folders)")
        )
    if dst.exists() and not dst.is_dir():
        raise BatchError(f"{dst}: exists and is not a folder")
    if not dst.exists() and dst.suffix.lower() in IMAGE_SUFFIXES:
        raise BatchError(f"{dst}: for a folder of images -o names a folder, and this looks like a file name")
    shard, count = options.shard or launcher_shard()
    rels = [f.relative_to(src) for f in files if in_shard(f.relative_to(src), shard, count)]
    return [(src / r, dst / output_name(r, options.suffix, options.ext)) for r in rels]


def plan(src: Path, dst: Path, options: BatchOptions, into_folder: bool = False) -> list[Job]:
    """The jobs of an image file (``plan_file``) or a folder (``plan_folder``), none writing over an input."""
    jobs = plan_file(src, dst, options, into_folder) if src.is_file() else plan_folder(src, dst, options)
    refuse_overwriting_inputs(src, dst, jobs, options)
    return jobs


def targets(dst: Path, options: BatchOptions) -> list[Path]:
    """Every file one job writes: its output, or with ``all_levels`` one per level."""
    return [level_path(dst, f) for f in level_factors(options.scale)] if options.all_levels else [dst]


def refuse_overwriting_inputs(src: Path, dst: Path, jobs: list[Job], options: BatchOptions) -> None:
    """An output that is an input (same path, hard link, symlink, -o = -i) is refused unless ``overwrite``.

    Files are compared by device and inode, as cp and rsync do, so no spelling of a
    path (relative, ``..``, a link) slips through.
    """
    if options.overwrite:
        return
    if src.is_dir() and dst.exists() and os.path.samefile(src, dst):
        raise BatchError(
            f"{dst}: is the input folder; outputs would replace the inputs (use another -o, or --overwrite)"
        )
    inputs = {(st.st_dev, st.st_ino) for st in (job_src.stat() for job_src, _ in jobs)}
    for _, job_dst in jobs:
        for target in targets(job_dst, options):
            if target.exists() and (target.stat().st_dev, target.stat().st_ino) in inputs:
                raise BatchError(f"{target}: is an input file; refusing to replace it (use another -o, or --overwrite)")


def run(
    upscaler: Tiler,
    jobs: list[Job],
    options: BatchOptions,
    keep_going: bool = True,
    log: Callable[[str, bool], None] = lambda line, problem: None,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Write every job's outputs; with ``keep_going`` (a folder) a bad image is reported and skipped.

    An image's outputs, when small (WRITE_BEHIND_BYTES, and at most an eighth of the memory budget),
    are encoded and written on a second thread while the network runs the next image, whose budget
    leaves room for them; one image at a time, so at most one image's outputs wait. A run stopped
    meanwhile lets that write finish and reports it: its file is whole. ``log(line, problem)`` gets one
    line per file written (``problem`` False) and per warning or skipped image (True);
    ``progress(done, total)`` one call per image.
    """
    result = BatchResult(total=len(jobs))
    cleaned: set[Path] = set()
    budget = upscaler.max_memory
    writer = ThreadPoolExecutor(1, thread_name_prefix="lapsrn-write") if keep_going else None
    pending: tuple[Path, Callable[[], list[Path]]] | None = None  # the image being written meanwhile

    def advance() -> None:
        if progress:
            progress(result.images + result.skipped + len(result.failed), result.total)

    def failure(src: Path, e: Exception) -> None:
        if not keep_going:
            raise e
        reason = f"out of memory ({e})" if isinstance(e, MemoryError) else str(e)
        result.failed.append((src, reason))
        log(f"skipped {src}: {reason}", True)

    def settle(src: Path, writes: Callable[[], list[Path]]) -> None:
        """Run or wait for one image's writes (``writes`` returns the paths written) and report the outcome."""
        try:
            paths = writes()
        except (MemoryError, ImageError, ValueError) as e:
            failure(src, e)
        else:
            result.images += 1
            result.written.extend(paths)
            for path in paths:
                log(f"wrote {path}", False)
        advance()

    def written_before() -> None:
        """Wait for the image being written, report it, and give its outputs' bytes back to the budget."""
        nonlocal pending
        if pending:
            (src, done), pending = pending, None
            upscaler.max_memory = budget
            settle(src, done)

    try:
        for src, dst in jobs:
            if dst.parent not in cleaned:  # a killed earlier run's temp files: its pid is dead
                dst.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_temps(dst.parent)
                cleaned.add(dst.parent)
            if options.skip_existing and all(t.exists() for t in targets(dst, options)):
                result.skipped += 1
                advance()
                continue
            try:
                try:
                    stream = streamed(upscaler, src, dst, options.scale, options.all_levels)
                except ValueError:
                    if not pending:
                        raise
                    stream = True  # not beside the outputs being written: decided again once they are
                if stream and pending:  # the whole budget, for an image too large to hold whole beside them
                    written_before()
                    stream = streamed(upscaler, src, dst, options.scale, options.all_levels)
                outputs = [] if stream else upscale_outputs(upscaler, src, dst, options.scale, options.all_levels)
            except (MemoryError, ImageError, ValueError) as e:
                written_before()  # reports stay in the images' order
                failure(src, e)
                advance()
                continue
            written_before()
            if stream:  # too large to hold whole: written as it is upscaled
                settle(src, lambda: stream_file(upscaler, src, dst, options.scale, options.png_compression))
                continue
            for out, path in outputs:
                for lost in dropped_by_format(out, path):
                    log(f"warning: {path}: written without {lost}; write .png or .tif to keep it", True)
            size = held_bytes(outputs)
            write = (outputs, options.quality, options.png_compression)
            if writer and size <= min(WRITE_BEHIND_BYTES, budget // 8):
                pending = (src, writer.submit(write_outputs, *write).result)
                upscaler.max_memory = budget - size  # the next image runs beside these outputs
            else:
                settle(src, lambda: write_outputs(*write))
        written_before()
    finally:
        if writer:
            writer.shutdown(wait=True)  # an interrupted run's last write completes, and is reported
            written_before()
        upscaler.max_memory = budget
    return result
