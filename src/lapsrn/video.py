"""Video in, video out: each frame's luminance plane through the network, its chroma planes bicubic.

Decoded video frames are already YCbCr, so the network takes a frame's Y plane as it comes out of the
decoder, with no colour conversion, and the Cb/Cr planes are resized with the protocol's bicubic, as the
image path does with an image's. PyAV (FFmpeg's libraries; its wheels carry x264, x265, libvpx and
SVT-AV1) decodes, encodes and muxes: a container and codec layer is no code to write ourselves.

A run is cut into segments of about SEGMENT_SECONDS of frames. Each segment is encoded by a fresh
encoder and kept, once complete, in a work folder beside the output (``.NAME.lapsrn-video``); the output
is then assembled from the segments' packets and the source's audio and subtitle packets (copied, not
re-encoded) in one atomic write. An interrupted run keeps its finished segments and the same command
resumes after them. Every run, interrupted or not, encodes the same segments from the same frames, so a
resumed run writes the same file as an uninterrupted one (tested).

Three threads overlap the work: one decodes, the caller's runs the network (itself on the engine's
threads), one encodes; bounded queues between them keep at most QUEUE_FRAMES frames waiting at each step.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import json
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import protocol as P
from .colour import levels_for
from .io import atomic_path, remove_stale_temps

if TYPE_CHECKING:
    from .tiling import Tiler

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}  # outputs
VIDEO_SUFFIXES = {*CONTAINERS, ".avi"}  # inputs: AVI is read, not written (it has no place for B-frames' timing)
SEGMENT_SECONDS = 4  # frames per segment: what an interruption may lose, and one forced keyframe each
QUEUE_FRAMES = 2  # frames waiting between decoder, network and encoder, each way
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


class VideoError(ValueError):
    """A video that cannot be read, upscaled or written; the message is one line for the user."""


@dataclass(frozen=True)
class Codec:
    """An output codec as ``--codec`` names it, the FFmpeg encoder behind it and its quality settings."""

    encoder: str
    crf: int  # default constant-quality level: lower is better and larger
    crf_max: int
    presets: tuple[str, ...]
    preset: str  # default speed/size trade-off
    preset_option: str  # the encoder's option that --preset sets


CODECS = {
    "h264": Codec("libx264", 18, 51, X26X_PRESETS, "medium", "preset"),
    "hevc": Codec("libx265", 20, 51, X26X_PRESETS, "medium", "preset"),
    "vp9": Codec("libvpx-vp9", 24, 63, tuple(map(str, range(9))), "4", "cpu-used"),
    "av1": Codec("libsvtav1", 28, 63, tuple(map(str, range(14))), "8", "preset"),
}


@dataclass(frozen=True)
class VideoOptions:
    """How the output is encoded: codec (None: VP9 for .webm, else H.264), constant quality, speed preset
    (None: the codec's defaults in ``CODECS``). Checked against the codec in ``resolved``."""

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.codec is not None and self.codec not in CODECS:
            raise VideoError(f"unknown codec {self.codec!r} (choose {', '.join(CODECS)})")

    def resolved(self, suffix: str) -> tuple[str, Codec, int, str]:
        """(codec name, codec, crf, preset) for an output with this extension; a value the codec refuses is
        one error line."""
        name = self.codec or ("vp9" if suffix == ".webm" else "h264")
        codec = CODECS[name]
        if self.crf is not None and not 0 <= self.crf <= codec.crf_max:
            raise VideoError(f"--crf for {name} must be from 0 to {codec.crf_max}, got {self.crf}")
        if self.preset is not None and self.preset not in codec.presets:
            raise VideoError(f"--preset for {name} must be one of {', '.join(codec.presets)}, got {self.preset!r}")
        return name, codec, codec.crf if self.crf is None else self.crf, self.preset or codec.preset


def is_video(path: Path) -> bool:
    """Whether a path names a video by its extension (mp4, m4v, mov, mkv, webm, avi)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def output_format(dst: Path) -> str:
    """FFmpeg's muxer for an output's extension; one line for one lapsrn does not write."""
    suffix = dst.suffix.lower()
    if suffix == ".avi":
        raise VideoError(f"{dst}: AVI cannot keep the frames' timestamps; write .mkv, .mp4, .mov or .webm")
    if suffix not in CONTAINERS:
        raise VideoError(f"{dst}: a video's output must be a video file ({', '.join(sorted(CONTAINERS))})")
    return CONTAINERS[suffix]


@dataclass(frozen=True)
class Layout:
    """How a frame's samples are stored: planar YCbCr with this chroma subsampling, bit depth and range."""

    sub_w: int  # chroma subsampling: 2, 2 for 4:2:0; 2, 1 for 4:2:2; 1, 1 for 4:4:4
    sub_h: int
    bits: int  # 8 or 10
    full_range: bool  # samples 0..255 (JPEG range) instead of the studio range 16..235

    @property
    def pix_fmt(self) -> str:
        """FFmpeg's name of this layout (the range is a flag of the frame, not part of the name)."""
        kind = {(2, 2): "420", (2, 1): "422", (1, 1): "444"}[(self.sub_w, self.sub_h)]
        return f"yuv{kind}p" + ("10le" if self.bits == 10 else "")

    @property
    def dtype(self) -> type:
        return np.uint8 if self.bits == 8 else np.uint16

    def with_format(self, pix_fmt: str) -> Layout:
        """The same range with the subsampling and depth of ``pix_fmt`` (one of ours)."""
        m = re.fullmatch(r"yuv(420|422|444)p(10le)?", pix_fmt)
        assert m, pix_fmt
        sub = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}[m[1]]
        return Layout(*sub, 10 if m[2] else 8, self.full_range)


def source_layout(pix_fmt: str, full_range: bool) -> tuple[Layout, bool]:
    """The layout frames of this format are read in, and whether they must be converted (``reformat``) first.

    Planar 4:2:0, 4:2:2 and 4:4:4 YCbCr of 8 or 10 bits are read as they are; anything else (RGB, NV12,
    gray, alpha, 12 bits...) is converted to 4:2:0 of 8 bits, or 10 when the source has more.
    """
    m = re.fullmatch(r"yuv(j?)(420|422|444)p(10le)?", pix_fmt)
    if m:
        sub = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}[m[2]]
        return Layout(*sub, 10 if m[3] else 8, full_range or m[1] == "j"), False
    import av

    deep = any(c.bits > 8 for c in av.VideoFormat(pix_fmt).components)
    return Layout(2, 2, 10 if deep else 8, full_range), True


def output_layout(source: Layout, supported: set[str]) -> Layout:
    """The source's layout if the encoder takes it, else the nearest it does: 8 bits, then 4:2:0."""
    for fmt in (source.pix_fmt, source.with_format(source.pix_fmt.replace("10le", "")).pix_fmt):
        if fmt in supported:
            return source.with_format(fmt)
    for fmt in ("yuv420p10le" if source.bits == 10 else "yuv420p", "yuv420p"):
        if fmt in supported:
            return source.with_format(fmt)
    raise VideoError(f"the encoder takes none of lapsrn's planar YCbCr formats ({', '.join(sorted(supported))})")


def to_network(plane: np.ndarray, layout: Layout) -> np.ndarray:
    """A Y plane's samples -> float32 luminance as the network was trained on: studio-range BT.601 Y in [0, 1].

    10-bit samples are 8-bit ones times 4 (FFmpeg's convention); a full-range plane is mapped to studio range.
    In float64 and then rounded to float32, as the image path converts its Y.
    """
    y = plane / 2.0 ** (layout.bits - 8)
    if layout.full_range:
        y = 16 + y * (219 / 255)
    return (y / 255).astype(np.float32)


def from_network(y: np.ndarray, layout: Layout) -> np.ndarray:
    """The network's float luminance -> samples of the layout, rounding half up as MATLAB's im2uint8."""
    v = y.astype(np.float64) * 255
    if layout.full_range:
        v = (v - 16) * (255 / 219)
    top = 2**layout.bits - 1
    return np.clip(np.floor(v * 2 ** (layout.bits - 8) + 0.5), 0, top).astype(layout.dtype)


def resize_chroma(plane: np.ndarray, size: tuple[int, int], layout: Layout) -> np.ndarray:
    """A Cb or Cr plane resized to ``size`` with the protocol's (MATLAB's) bicubic, back in the layout's samples."""
    top = 2**layout.bits - 1
    out = P.imresize(plane / top, size=size)
    return np.clip(np.floor(out * top + 0.5), 0, top).astype(layout.dtype)


def output_size(h: int, w: int, scale: float, layout: Layout) -> tuple[int, int]:
    """(height, width) of the upscaled frames: the image path's size, made a multiple of the chroma subsampling
    (an odd size at x3 loses its last row or column), as 4:2:0 and 4:2:2 encoders require."""
    oh, ow = P.output_size(h, scale), P.output_size(w, scale)
    return oh - oh % layout.sub_h, ow - ow % layout.sub_w


def read_planes(frame, layout: Layout) -> list[np.ndarray]:
    """Y, Cb, Cr of a decoded frame as arrays (views of its buffers, without the padding at each row's end)."""
    out = []
    for plane in frame.planes[:3]:
        arr = np.frombuffer(plane, layout.dtype).reshape(plane.height, -1)
        out.append(arr[:, : plane.width])
    return out


def write_planes(frame, planes: list[np.ndarray]) -> None:
    """Copy Y, Cb, Cr into a new frame's buffers."""
    for plane, arr in zip(frame.planes, planes):
        dst = np.frombuffer(plane, arr.dtype).reshape(plane.height, -1)
        dst[:, : plane.width] = arr


def upscale_luma(upscaler: Tiler, y: np.ndarray, scale: float, size: tuple[int, int], reserved: int) -> np.ndarray:
    """The network's Y at ``size`` for a float32 LR plane: band by band at a power of two, else the next level
    resized down bicubically (as the image path does for x3). ``reserved``: bytes the caller holds of the budget."""
    levels = levels_for(scale)
    full = (P.output_size(y.shape[0], scale), P.output_size(y.shape[1], scale))
    if scale != 2**levels:
        big = upscaler.pyramid_y(y, levels, last_only=True)[-1]
        return P.imresize(big, size=full)[: size[0], : size[1]].astype(np.float32)
    out = np.empty(full, np.float32)
    f = 2**levels
    for r0, r1, (band,) in upscaler.bands(y, levels, last_only=True, reserved=reserved):
        out[r0 * f : r1 * f] = band
    return out[: size[0], : size[1]]


@dataclass(frozen=True)
class Source:
    """What the first frame and the stream say about a video, before any work."""

    width: int
    height: int
    pix_fmt: str
    layout: Layout
    convert: bool  # frames need ``reformat`` to the layout
    time_base: Fraction
    rate: Fraction | None
    frames: int | None  # as the container says, or estimated from the duration; None when unknown
    frames_exact: bool  # the container says how many (MP4, MOV); Matroska and WebM give only a duration
    rotation: int
    colour: tuple[int, int, int, int]  # primaries, transfer, matrix, range as FFmpeg numbers them
    sample_aspect: Fraction | None


def probe(src: Path) -> Source:
    """Open a video and decode its first frame: size, format, rate, rotation, colour. Errors are one line."""
    container = open_input(src)
    try:
        stream = _video_stream(container, src)
        first = next(_frames(container, stream, [0]), None)
        if first is None:
            raise VideoError(f"{src}: its video stream has no frames that can be decoded")
        ctx = stream.codec_context
        full = first.color_range == 2 or first.format.name.startswith("yuvj")
        layout, convert = source_layout(first.format.name, full)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        frames = stream.frames or None
        seconds = _seconds(stream)
        if frames is None and rate and seconds:
            frames = round(seconds * rate)
        sar = ctx.sample_aspect_ratio
        return Source(
            first.width,
            first.height,
            first.format.name,
            layout,
            convert,
            Fraction(stream.time_base),
            Fraction(rate) if rate else None,
            frames,
            bool(stream.frames),
            int(first.rotation or 0),
            (int(first.color_primaries), int(first.color_trc), int(first.colorspace), int(first.color_range)),
            Fraction(sar) if sar and sar > 0 else None,
        )
    finally:
        container.close()


def _seconds(stream) -> float | None:
    """The video stream's own duration (not the file's, which may be the audio's): from the stream, or from
    Matroska's DURATION tag ("00:01:02.500000000")."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    m = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", tag or "")
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None


def open_input(src: Path):
    """PyAV's container for a file, or one clear line for a missing, unreadable or unknown file."""
    import av

    if not src.is_file():
        raise VideoError(f"{src}: no such file")
    try:
        return av.open(str(src), metadata_errors="ignore")
    except av.error.EOFError:
        raise VideoError(f"{src}: the file ends before any video data (empty or cut short)") from None
    except av.FFmpegError as e:
        raise VideoError(f"{src}: cannot read it as a video ({_reason(e)})") from None


def _reason(e: Exception) -> str:
    """FFmpeg's own words for an error, without PyAV's errno and file name."""
    return getattr(e, "strerror", None) or str(e)


def _video_stream(container, src: Path):
    """The first video stream, decoded on FFmpeg's own threads; one line if there is none or no decoder for it."""
    if not container.streams.video:
        raise VideoError(f"{src}: has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoError(f"{src}: FFmpeg here has no decoder for its video codec")
    stream.thread_type = "AUTO"
    return stream


def _frames(container, stream, corrupt: list[int]) -> Iterator:
    """Decoded frames in order; a packet that does not decode is skipped and counted in ``corrupt[0]``."""
    import av

    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            corrupt[0] += 1
            continue
        except av.FFmpegError as e:
            raise VideoError(f"cannot decode the video: {_reason(e)}") from None
        yield from frames


@dataclass(frozen=True)
class Plan:
    """Everything that decides the output's bytes: a resumed run continues a work folder only with the same plan."""

    source: str  # path, size and modification time
    model: str  # hash of the network's output on a fixed probe (weights and engine alike)
    scale: float
    codec: str
    crf: int
    preset: str
    width: int
    height: int
    pix_fmt: str
    full_range: bool
    segment_frames: int
    libraries: str  # PyAV and FFmpeg's versions: another encoder build may write other bytes


def model_fingerprint(upscaler: Tiler, levels: int) -> str:
    """A hash of the network's output on a fixed pseudo-random 24x20 plane: the same iff the model computes the same."""
    y = np.random.default_rng(0).random((24, 20), dtype=np.float32)
    return hashlib.sha256(b"".join(o.tobytes() for o in upscaler.pyramid_y(y, levels))).hexdigest()[:16]


def work_folder(dst: Path) -> Path:
    """Where the finished segments of ``dst`` wait: a hidden folder beside it."""
    return dst.with_name(f".{dst.name}.lapsrn-video")


class WorkFolder:
    """The finished segments of one output, beside it: ``plan.json``, then ``NNNNN.bin`` (packets) and
    ``NNNNN.json`` (their timestamps), each written to a temp name and renamed, the JSON last."""

    def __init__(self, dst: Path, plan: Plan) -> None:
        self.path = work_folder(dst)
        self.plan = plan

    def open(self) -> int:
        """Make or reuse the folder; returns how many segments are already done (0 when the plan changed)."""
        plan_file = self.path / "plan.json"
        if self.path.is_dir():
            try:
                same = json.loads(plan_file.read_text()) == json.loads(json.dumps(asdict(self.plan)))
            except (OSError, ValueError):
                same = False
            if not same:
                shutil.rmtree(self.path)
        if not self.path.is_dir():
            self.path.mkdir(parents=True)
            self._write(plan_file, json.dumps(asdict(self.plan)).encode())
        remove_stale_temps(self.path)
        done = 0
        while (self.path / f"{done:05d}.json").is_file():
            done += 1
        return done

    def complete(self) -> bool:
        """Whether the last segment is there (it says so), so the output can be assembled without decoding."""
        done = self.open()
        return done > 0 and self.index(done - 1)["last"]

    def _write(self, path: Path, data: bytes) -> None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)

    def add(self, number: int, packets: list, extradata: bytes, last: bool) -> None:
        """Keep one finished segment: its packets' bytes, then the index that makes it count."""
        self._write(self.path / f"{number:05d}.bin", b"".join(bytes(p) for p in packets))
        index = {
            "packets": [[p.pts, p.dts, p.duration, bool(p.is_keyframe), p.size] for p in packets],
            "extradata": base64.b64encode(extradata).decode(),
            "last": last,
        }
        self._write(self.path / f"{number:05d}.json", json.dumps(index).encode())

    def index(self, number: int) -> dict:
        return json.loads((self.path / f"{number:05d}.json").read_text())

    def packets(self, count: int) -> Iterator[tuple[bytes, int, int, int, bool]]:
        """Every segment's packets in order: (data, pts, dts, duration, keyframe)."""
        for n in range(count):
            data = (self.path / f"{n:05d}.bin").read_bytes()
            offset = 0
            for pts, dts, duration, key, size in self.index(n)["packets"]:
                yield data[offset : offset + size], pts, dts, duration, key
                offset += size

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class VideoResult:
    """What ``upscale_video`` did."""

    path: Path
    frames: int  # frames upscaled in this run (resumed segments not counted)
    resumed_segments: int
    corrupt_packets: int
    notes: list[str]


def configure_encoder(ctx, plan: Plan, src: Source, rate: Fraction | None) -> None:
    """Every setting of the video encoder, shared by the segments' encoders and the output's stream so that
    the stream's header (extradata) is the segments'."""
    import av

    codec = CODECS[plan.codec]
    ctx.width, ctx.height, ctx.pix_fmt = plan.width, plan.height, plan.pix_fmt
    ctx.time_base = src.time_base
    if rate:
        ctx.framerate = rate
    ctx.color_primaries, ctx.color_trc, ctx.colorspace, _ = src.colour
    ctx.color_range = 2 if plan.full_range else (src.colour[3] or 1)
    if src.sample_aspect:
        ctx.sample_aspect_ratio = src.sample_aspect
    options = {"crf": str(plan.crf), codec.preset_option: plan.preset}
    if plan.codec == "vp9":
        options.update({"b": "0", "row-mt": "1", "deadline": "good"})  # constant quality needs a zero bit rate
    if plan.codec == "hevc":
        options["x265-params"] = "log-level=error"
    ctx.options = options
    ctx.flags |= av.codec.context.Flags.global_header


def upscale_video(
    upscaler: Tiler,
    src: str | Path,
    dst: str | Path,
    scale: float = 2,
    options: VideoOptions | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> VideoResult:
    """Upscale a video file into ``dst`` (its extension picks the container); returns what was done.

    Y through the network, Cb/Cr bicubic, the source's frame timestamps, rate, rotation, colour tags and
    sample aspect kept; audio and subtitle streams copied without re-encoding. 8- and 10-bit sources keep
    their depth where the codec takes it. An interrupted run's finished segments are kept beside ``dst``
    and reused by the next call with the same arguments. ``progress(done, total)`` is called per frame
    (total None when the container does not say); ``log(line)`` hears what the user should know (a format
    that changes, a resumed run, skipped packets). Bad input raises ``VideoError`` with one line.
    """
    import av

    src, dst = Path(src), Path(dst)
    options = options or VideoOptions()
    fmt = output_format(dst)
    codec_name, codec, crf, preset = options.resolved(dst.suffix.lower())
    levels = levels_for(scale)
    if upscaler.max_levels is not None and levels > upscaler.max_levels:
        raise VideoError(
            f"this LapSRN goes up to x{2**upscaler.max_levels}; for x{scale:g} use one trained for it or an "
            "MS-LapSRN model, such as the bundled default"
        )
    if codec_name == "av1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner at every encoder's start otherwise
    info = probe(src)
    try:
        encoder = av.Codec(codec.encoder, "w")
    except (av.FFmpegError, ValueError):  # PyAV's UnknownCodecError is a ValueError
        raise VideoError(f"this PyAV build has no {codec.encoder} encoder for --codec {codec_name}") from None
    supported = {f.name for f in encoder.video_formats or []}
    layout = output_layout(info.layout, supported)
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if log:
            log(message)

    if (layout.bits, layout.pix_fmt) != (info.layout.bits, info.layout.pix_fmt) or info.convert:
        note(f"{info.pix_fmt} frames are written as {layout.pix_fmt} ({codec_name} in this build)")
    height, width = output_size(info.height, info.width, scale, layout)
    upscaler.tile_size(info.height, info.width, levels, frames_held_bytes(width, height, layout))  # too small a budget
    stat = src.stat()
    rate = info.rate
    plan = Plan(
        f"{src.resolve()} {stat.st_size} {stat.st_mtime_ns}",
        model_fingerprint(upscaler, levels),
        float(scale),
        codec_name,
        crf,
        preset,
        width,
        height,
        layout.pix_fmt,
        layout.full_range,
        max(1, round(SEGMENT_SECONDS * rate)) if rate else 100,
        f"PyAV {av.__version__}, libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}",
    )
    for stream in _check_output(src, dst, fmt, plan, info):
        note(f"{stream} of {src} is not copied: only the video, audio and subtitles are")
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dst.parent)
    work = WorkFolder(dst, plan)
    resumed = work.open()
    if resumed:
        note(f"resuming after {resumed} finished segment(s) kept in {work.path}")
    corrupt = [0]
    done_frames = 0
    try:
        if not work.complete():
            with upscaler.limits():  # the network runs on this thread; decoding and encoding on their own
                done_frames = _run(upscaler, src, info, layout, plan, work, resumed, corrupt, progress, note)
        try:
            _assemble(src, dst, fmt, work, work.open(), plan, info)
        except av.FFmpegError as e:
            raise VideoError(
                f"cannot write {dst}: {_reason(e)} (the finished segments stay in {work.path}; delete it to start over)"
            ) from None
    except BaseException:  # an error or Ctrl-C: a folder with no finished segment is only clutter
        if work.open() == 0:
            work.remove()
        raise
    work.remove()
    if corrupt[0]:
        note(f"{corrupt[0]} packet(s) of {src} could not be decoded and were skipped")
    return VideoResult(dst, done_frames, resumed, corrupt[0], notes)


def _check_output(src: Path, dst: Path, fmt: str, plan: Plan, info: Source) -> list[str]:
    """Refuse, before any work, an output that would fail at the end: a container that cannot hold the video
    codec or a stream to copy (by FFmpeg's list, for a clear message), then anything else the muxer or the
    encoder refuses (a codec a container lists but will not write, a frame size beyond the encoder's limits),
    found by writing the output's header to nowhere. Returns what is left behind: streams other than the first
    video, audio and subtitles (data, attachments, a second video), each described for a note."""
    import av

    container = open_input(src)
    out = av.open(os.devnull, "w", format=fmt)
    try:
        held = out.supported_codecs
        if plan.codec not in held:
            raise VideoError(f"{dst}: a {dst.suffix} file cannot hold {plan.codec} video (choose another --codec)")
        left = []
        for s in container.streams:
            name = s.codec_context.name if s.codec_context is not None else "unknown"
            if s.type in ("audio", "subtitle") and name in held:
                out.add_stream_from_template(s)
            elif s.type in ("audio", "subtitle"):
                raise VideoError(f"{dst}: a {dst.suffix} file cannot hold the {name} {s.type} of {src}")
            elif s.index != container.streams.video[0].index:
                left.append(f"stream {s.index} ({s.type}, {name})")
        video = out.add_stream(CODECS[plan.codec].encoder, rate=info.rate)
        configure_encoder(video.codec_context, plan, info, info.rate)
        out.start_encoding()
        return left
    except av.FFmpegError as e:
        raise VideoError(
            f"{dst}: {plan.codec} at {plan.width}x{plan.height} in a {dst.suffix} file is refused ({_reason(e)})"
        ) from None
    finally:
        with contextlib.suppress(av.FFmpegError):
            out.close()
        container.close()


def _put(q: queue.Queue, item: object, stop: threading.Event) -> None:
    """Put unless the run is stopping (a full queue would otherwise block a stopping thread forever)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event, threads: list[threading.Thread]) -> object:
    """The next item, or _FAILED once the run is stopping or a stage's thread has ended without passing END
    (its error is in the caller's list)."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set() or not all(t.is_alive() for t in threads):
                return _FAILED


_END, _FAILED = object(), object()


def frames_held_bytes(width: int, height: int, layout: Layout) -> int:
    """Bytes of the memory budget that frames in flight take beside the network's feature maps: output frames
    queued, being encoded and being filled, the float32 Y plane, the chroma's float64 temporaries."""
    pixels = width * height
    frame = pixels * (1 + 2 / (layout.sub_w * layout.sub_h)) * (1 if layout.bits == 8 else 2)
    return int(frame * (QUEUE_FRAMES + 2) + pixels * (4 + 16 / (layout.sub_w * layout.sub_h)))


def _run(
    upscaler: Tiler,
    src: Path,
    info: Source,
    layout: Layout,
    plan: Plan,
    work: WorkFolder,
    resumed: int,
    corrupt: list[int],
    progress: Callable[[int, int | None], None] | None,
    say: Callable[[str], None],
) -> int:
    """Decode, upscale and encode every frame after the resumed segments; returns the frames upscaled.
    ``say`` hears of frames lost or given a timestamp."""
    import av

    skip = resumed * plan.segment_frames
    decoded: queue.Queue = queue.Queue(QUEUE_FRAMES)
    upscaled: queue.Queue = queue.Queue(QUEUE_FRAMES)
    stop = threading.Event()
    errors: list[BaseException] = []
    reserved = frames_held_bytes(plan.width, plan.height, layout)
    count = [0]  # frames decoded, those of resumed segments included
    retimed = [0]  # frames without a timestamp, or one not after the frame before, given the next one

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except av.FFmpegError as e:  # an encoder that fails mid-run: one line, not PyAV's exception
                errors.append(VideoError(f"{fn.__name__} failed: {_reason(e)}"))
                stop.set()
            except BaseException as e:  # noqa: BLE001 -- handed to the caller's thread
                errors.append(e)
                stop.set()

        return run

    def decode() -> None:
        container = open_input(src)
        try:
            stream = _video_stream(container, src)
            last = None
            step = max(1, round(1 / (info.rate * info.time_base))) if info.rate else 1
            for index, frame in enumerate(_frames(container, stream, corrupt)):
                if stop.is_set():
                    return
                if frame.pts is None or (last is not None and frame.pts <= last):
                    frame.pts = 0 if last is None else last + step  # encoders need increasing timestamps
                    retimed[0] += 1
                last = frame.pts
                if index >= skip:
                    _put(decoded, (index, frame), stop)
                count[0] = index + 1
            _put(decoded, _END, stop)
        finally:
            container.close()

    def encode() -> None:
        encoder, number, packets = None, -1, []
        while True:
            item = _get(upscaled, stop, [network_thread])
            if item is _FAILED:
                return
            if item is _END or item[0] // plan.segment_frames != number:
                if encoder is not None:
                    packets += encoder.encode(None)
                    work.add(number, packets, bytes(encoder.extradata or b""), item is _END)
                if item is _END:
                    return
                number, packets = item[0] // plan.segment_frames, []
                encoder = av.CodecContext.create(CODECS[plan.codec].encoder, "w")
                configure_encoder(encoder, plan, info, info.rate)
            packets += encoder.encode(item[1])

    network_thread = threading.current_thread()
    threads = [
        threading.Thread(target=guarded(decode), name="lapsrn-decode", daemon=True),
        threading.Thread(target=guarded(encode), name="lapsrn-encode", daemon=True),
    ]
    for t in threads:
        t.start()
    frames = 0
    try:
        while True:
            item = _get(decoded, stop, threads[:1])
            if item is _FAILED or stop.is_set():
                break
            if item is _END:
                _put(upscaled, _END, stop)
                break
            index, frame = item
            _put(upscaled, (index, upscale_frame(upscaler, frame, info, layout, plan, reserved)), stop)
            frames += 1
            if progress:
                progress(index + 1, info.frames)
        threads[1].join()
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    if count[0] == 0:
        raise VideoError(f"{src}: its video stream has no frames that can be decoded")
    if info.frames_exact and count[0] < info.frames:  # Matroska's duration gives an estimate, not a count
        say(f"only {count[0]} of the {info.frames} frames {src} announces could be decoded (damaged or cut short)")
    if retimed[0]:
        say(f"{retimed[0]} frame(s) of {src} had no timestamp or one out of order, and were given the next one")
    return frames


def upscale_frame(upscaler: Tiler, frame, info: Source, layout: Layout, plan: Plan, reserved: int):
    """One decoded frame -> the upscaled frame in the output's format, with the source frame's timestamp."""
    import av

    if (frame.width, frame.height) != (info.width, info.height):
        raise VideoError(
            f"the video changes size mid-stream ({info.width}x{info.height}, then {frame.width}x"
            f"{frame.height}): lapsrn writes one size"
        )
    if info.convert or frame.format.name != info.pix_fmt:
        frame = frame.reformat(format=info.layout.pix_fmt)
    y, cb, cr = read_planes(frame, info.layout)
    size = (plan.height, plan.width)
    luma = upscale_luma(upscaler, to_network(y, info.layout), plan.scale, size, reserved)
    chroma_size = (plan.height // layout.sub_h, plan.width // layout.sub_w)
    out = av.VideoFrame(plan.width, plan.height, layout.pix_fmt)
    if layout.bits != info.layout.bits:  # 10-bit source, 8-bit encoder: the chroma's scale changes too
        cb, cr = (c.astype(np.float64) / 2 ** (info.layout.bits - layout.bits) for c in (cb, cr))
    write_planes(out, [from_network(luma, layout), *(resize_chroma(c, chroma_size, layout) for c in (cb, cr))])
    out.pts, out.time_base = frame.pts, frame.time_base
    out.color_range = 2 if layout.full_range else 1
    return out


def _assemble(src: Path, dst: Path, fmt: str, work: WorkFolder, count: int, plan: Plan, info: Source) -> None:
    """Write ``dst`` atomically from the segments' video packets and the source's audio and subtitle packets,
    interleaved by time, with the source's metadata and the video's rotation."""
    import av

    container = open_input(src)
    try:
        options = {"fflags": "+bitexact"}  # no random ids (Matroska) or version strings: reruns write equal files
        if fmt in ("mp4", "mov"):
            options["movflags"] = "+faststart"  # the index first: playable while downloading
        with atomic_path(dst) as tmp:
            out = av.open(str(tmp), "w", format=fmt, options=options)
            try:
                skip = {"major_brand", "minor_version", "compatible_brands", "encoder"}
                out.metadata.update({k: v for k, v in container.metadata.items() if k not in skip})
                video = out.add_stream(CODECS[plan.codec].encoder, rate=info.rate)
                configure_encoder(video.codec_context, plan, info, info.rate)
                video.time_base = info.time_base
                if info.rotation:
                    video.set_display_rotation(info.rotation)
                source_video = container.streams.video[0]
                video.metadata.update({k: v for k, v in source_video.metadata.items() if k in ("language", "title")})
                copies = {}
                for s in container.streams:
                    if s.type in ("audio", "subtitle") and s.codec_context is not None:
                        copies[s.index] = out.add_stream_from_template(s)
                        copies[s.index].metadata.update(s.metadata)
                out.start_encoding()
                extradata = base64.b64decode(work.index(0)["extradata"])
                if bytes(video.codec_context.extradata or b"") != extradata:
                    raise RuntimeError("the output stream's header differs from the segments' (an encoder changed?)")
                for packet in _interleaved(work, count, video, container, copies, info.time_base):
                    out.mux(packet)
            finally:
                out.close()
    finally:
        container.close()


def _interleaved(work: WorkFolder, count: int, video, container, copies: dict, time_base: Fraction) -> Iterator:
    """The output's packets, video from the segments and the copied streams from the source, in time order."""
    import av

    def video_packets() -> Iterator[tuple[Fraction, int, object]]:
        last = None
        for data, pts, dts, duration, key in work.packets(count):
            if last is not None and dts is not None and dts <= last:
                dts = last + 1  # a segment's encoder starts its decoding times from its own first frames:
            last = dts if dts is not None else last  # after an uneven gap they may fall below the last segment's
            p = av.Packet(data)
            p.pts, p.dts, p.duration, p.time_base, p.is_keyframe = pts, dts, duration, time_base, key
            p.stream = video
            yield (dts if dts is not None else pts) * time_base, 0, p

    def copied_packets() -> Iterator[tuple[Fraction, int, object]]:
        streams = [s for s in container.streams if s.index in copies]
        if not streams:
            return
        for p in container.demux(streams):
            if p.size == 0 or (p.dts is None and p.pts is None):
                continue
            t = (p.dts if p.dts is not None else p.pts) * p.time_base
            p.stream = copies[p.stream_index]
            yield t, 1, p

    for _, _, packet in heapq.merge(video_packets(), copied_packets(), key=lambda x: (x[0], x[1])):
        yield packet
