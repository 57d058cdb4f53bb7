"""Video in, video out (``lapsrn.video``): clips made here with PyAV, upscaled as a user would, checked frame
by frame against the network run on the decoded frames one by one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import lapsrn
from lapsrn import protocol as P
from lapsrn.cli import main
from lapsrn.process_bench import mux_tone
from lapsrn.video import VideoError, read_planes, source_layout, work_folder

REPO = Path(__file__).resolve().parents[1]


def pattern(i: int, h: int, w: int) -> np.ndarray:
    """Frame ``i`` of a moving test pattern: drifting stripes, a moving disc, a colour ramp (RGB uint8)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    stripes = 0.5 + 0.4 * np.sin((xx + 2 * i) / 3.0) * np.cos((yy - i) / 5.0)
    disc = ((xx - (w / 4 + 2 * i) % w) ** 2 + (yy - h / 2) ** 2) < (min(h, w) / 5) ** 2
    r = np.where(disc, 0.9, stripes)
    g = 0.3 + 0.5 * xx / w
    b = 0.2 + 0.6 * yy / h * (1 - disc)
    return (np.stack([r, g, b], axis=-1) * 255).round().astype(np.uint8)


def make_clip(
    path: Path,
    w: int = 64,
    h: int = 48,
    frames: int = 12,
    fps: int = 24,
    audio: bool = True,
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
    rotation: int = 0,
    bt709: bool = False,
    codec: str = "libx264",
) -> Path:
    """A clip of the moving pattern, H.264 at near-lossless quality, with a 440 Hz AAC tone; ``pts`` in 1/fps
    units gives a variable frame rate."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps, options={"crf": "10"})
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        if bt709:
            video.codec_context.colorspace = video.codec_context.color_primaries = video.codec_context.color_trc = 1
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=48000, layout="mono") if audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(i, h, w), format="rgb24").reformat(format=pix_fmt)
            if bt709:
                frame.colorspace = frame.color_primaries = frame.color_trc = 1
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound:
            last = (pts[-1] + 1) if pts else frames
            mux_tone(out, sound, 48000 * last // fps)
    return path


def decoded(path: Path) -> list:
    with av.open(str(path)) as c:
        return [f for f in c.decode(video=0)]


def packets(path: Path, kind: str) -> list[bytes]:
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        return [bytes(p) for p in c.demux(streams) if p.size]


def expected_y(up, frame, scale: int) -> np.ndarray:
    """The image path's network on one decoded frame's Y plane, quantised as im2uint8: what the video must hold."""
    layout, _ = source_layout(frame.format.name, False)
    y = read_planes(frame, layout)[0] / 255.0
    out = up.pyramid_y(y, int(np.log2(scale)), last_only=True)[-1]
    return np.floor(np.clip(out.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def up():
    return lapsrn.load()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.mark.parametrize("scale", [2, 4])
def test_video_frames_equal_the_image_path(up, clip, tmp_path, scale):
    """Lossless output (--crf 0): every frame's Y is the network's on the decoded source frame, bit for bit,
    and Cb/Cr are the protocol's bicubic of the source's; count, size, rate, timestamps and audio kept."""
    out = tmp_path / f"x{scale}.mp4"
    result = up.upscale_video(clip, out, scale, crf=0)
    assert result.frames == 12 and result.corrupt_packets == 0
    src, got = decoded(clip), decoded(out)
    assert len(got) == len(src) == 12
    assert (got[0].width, got[0].height) == (64 * scale, 48 * scale)
    assert [f.pts * f.time_base for f in got] == [f.pts * f.time_base for f in src]
    for a, b in zip(src, got):
        layout, _ = source_layout(a.format.name, False)
        y, cb, cr = read_planes(b, layout)
        np.testing.assert_array_equal(y, expected_y(up, a, scale))
        for plane, mine in zip(read_planes(a, layout)[1:], (cb, cr)):
            want = np.floor(np.clip(P.imresize(plane / 255.0, size=mine.shape), 0, 1) * 255 + 0.5)
            np.testing.assert_array_equal(mine, want)
    with av.open(str(clip)) as a, av.open(str(out)) as b:
        assert b.streams.video[0].average_rate == a.streams.video[0].average_rate == 24
        assert abs(b.duration - a.duration) <= 1e6 / 24
        assert b.streams.audio[0].codec_context.name == "aac"
    assert packets(out, "audio") == packets(clip, "audio")  # copied, bit-identical


def test_default_quality_is_close_to_the_image_path(up, clip, tmp_path, capsys):
    """The command with its default codec settings (H.264, CRF 18): Y within codec loss of the image path."""
    out = tmp_path / "x2.mkv"
    code = main(["upscale", "-i", str(clip), "-o", str(out), "-s", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"wrote {out}" in err
    for a, b in zip(decoded(clip), decoded(out), strict=True):
        layout, _ = source_layout(b.format.name, False)
        diff = read_planes(b, layout)[0].astype(float) - expected_y(up, a, 2)
        assert 10 * np.log10(255**2 / np.mean(diff**2)) > 40  # PSNR of the encoded Y against the image path
    assert not work_folder(out).exists()  # the segments are gone once the output is whole
    assert packets(out, "audio") == packets(clip, "audio")


def test_variable_frame_rate_rotation_and_colour_are_kept(up, tmp_path):
    """Timestamps are copied, so a variable frame rate stays as it was; rotation and BT.709 tags go along."""
    pts = [0, 1, 2, 4, 5, 9, 10, 11]
    src = make_clip(tmp_path / "vfr.mov", frames=len(pts), fps=10, pts=pts, rotation=90, bt709=True)
    out = tmp_path / "vfr_x2.mov"
    up.upscale_video(src, out, 2)
    frames = decoded(out)
    assert [f.pts * f.time_base for f in frames] == [Fraction(p, 10) for p in pts]
    assert frames[0].rotation == 90
    assert (frames[0].colorspace, frames[0].color_primaries, frames[0].color_trc) == (1, 1, 1)


def test_subtitles_are_copied_and_other_streams_named(up, clip, tmp_path):
    """A subtitle stream goes along untouched; a second video stream is not copied, and a note says so."""
    src = tmp_path / "subs.mkv"
    with av.open(str(clip)) as a, av.open(str(src), "w") as out:
        streams = [out.add_stream_from_template(a.streams.video[0]), out.add_stream_from_template(a.streams.video[0])]
        subs = out.add_mux_stream("subrip")
        subs.time_base = Fraction(1, 1000)
        for p in a.demux(a.streams.video[0]):
            for stream in streams if p.size else []:
                q = av.Packet(bytes(p))
                q.pts, q.dts, q.time_base, q.is_keyframe, q.stream = p.pts, p.dts, p.time_base, p.is_keyframe, stream
                out.mux(q)
        for i, text in enumerate(["hello", "world"]):
            q = av.Packet(text.encode())
            q.pts = q.dts = i * 250
            q.duration, q.time_base, q.stream = 200, Fraction(1, 1000), subs
            out.mux(q)
    logged: list[str] = []
    up.upscale_video(src, tmp_path / "subs_x2.mkv", 2, log=logged.append)
    assert logged == [f"stream 1 (video, h264) of {src} is not copied: only the video, audio and subtitles are"]
    with av.open(str(tmp_path / "subs_x2.mkv")) as c:
        assert [s.type for s in c.streams] == ["video", "subtitle"]
        got = [(bytes(p), p.pts, p.duration) for p in c.demux(c.streams.subtitles[0]) if p.size]
    assert got == [(b"hello", 0, 200), (b"world", 250, 200)]


def test_ten_bit_keeps_its_depth_where_the_codec_allows(up, tmp_path):
    src = make_clip(tmp_path / "deep.mkv", pix_fmt="yuv420p10le", audio=False, frames=4)
    logged: list[str] = []
    up.upscale_video(src, tmp_path / "deep_x2.mkv", 2, codec="hevc", log=logged.append)
    assert decoded(tmp_path / "deep_x2.mkv")[0].format.name == "yuv420p10le"
    assert not logged
    up.upscale_video(src, tmp_path / "deep_vp9.webm", 2, log=logged.append)  # this build's VP9 is 8-bit only
    assert decoded(tmp_path / "deep_vp9.webm")[0].format.name == "yuv420p"
    assert logged == ["yuv420p10le frames are written as yuv420p (vp9 in this build)"]
    # the 10-bit source's Y is the same picture as its 8-bit rendering: the outputs agree within rounding
    a = read_planes(decoded(tmp_path / "deep_x2.mkv")[0], source_layout("yuv420p10le", False)[0])[0] / 4
    b = read_planes(decoded(tmp_path / "deep_vp9.webm")[0], source_layout("yuv420p", False)[0])[0]
    assert np.abs(a - b).mean() < 1.5


def test_odd_sizes_and_non_power_of_two_scales(up, tmp_path):
    """A 65x47 VP9 clip (H.264 has no odd 4:2:0 sizes) at x3: the image path's 195x141, less the odd row and
    column 4:2:0 cannot hold; at x2 130x94, the luminance exact."""
    src = make_clip(tmp_path / "odd.webm", w=65, h=47, frames=3, audio=False, codec="libvpx-vp9")
    up.upscale_video(src, tmp_path / "odd_x3.mp4", 3)
    assert (decoded(tmp_path / "odd_x3.mp4")[0].width, decoded(tmp_path / "odd_x3.mp4")[0].height) == (194, 140)
    up.upscale_video(src, tmp_path / "odd_x2.mp4", 2, crf=0)
    frame = decoded(tmp_path / "odd_x2.mp4")[0]
    assert (frame.width, frame.height) == (130, 94)
    layout, _ = source_layout("yuv420p", False)
    np.testing.assert_array_equal(read_planes(frame, layout)[0], expected_y(up, decoded(src)[0], 2))


def test_full_range_source_is_mapped_to_the_networks_range(up, tmp_path):
    """A full-range (JPEG-range) Y plane is mapped to studio range for the network and back: the output of a
    full-range clip is the studio-range clip's output, in full range."""
    studio = make_clip(tmp_path / "studio.mp4", audio=False, frames=2)
    full = tmp_path / "full.mp4"
    with av.open(str(full), "w") as out:
        video = out.add_stream("libx264", rate=24, options={"crf": "0"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.color_range = 2
        for f in decoded(studio):
            y = read_planes(f, source_layout("yuv420p", False)[0])
            planes = [np.clip(np.round((p.astype(float) - 16) * 255 / 219), 0, 255) for p in y[:1]] + y[1:]
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane, arr in zip(frame.planes, planes):
                np.frombuffer(plane, np.uint8).reshape(plane.height, -1)[:, : plane.width] = arr
            frame.color_range, frame.pts, frame.time_base = 2, f.pts, f.time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    up.upscale_video(full, tmp_path / "full_x2.mp4", 2, crf=0)
    up.upscale_video(studio, tmp_path / "studio_x2.mp4", 2, crf=0)
    got, ref = decoded(tmp_path / "full_x2.mp4")[1], decoded(tmp_path / "studio_x2.mp4")[1]
    assert got.color_range == 2
    layout = source_layout("yuv420p", False)[0]
    as_studio = read_planes(got, layout)[0].astype(float) * 219 / 255 + 16
    diff = np.abs(as_studio - read_planes(ref, layout)[0])
    assert diff.max() <= 2 and diff.mean() < 0.5  # three roundings apart: the source's, the output's, this one


def _command(src: Path, dst: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lapsrn", "upscale", "-i", str(src), "-o", str(dst), "-s", "2", "--quiet", *extra]


def _run_until_segments(cmd: list[str], folder: Path, sig: int) -> subprocess.CompletedProcess:
    """Start the command, wait until one segment is kept, then send ``sig``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (folder / "00000.json").exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no segment was finished in two minutes"
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """Four segments of 8 frames (2 fps: SEGMENT_SECONDS = 4), large enough that each takes a while."""
    return make_clip(tmp_path_factory.mktemp("long") / "long.mp4", w=256, h=192, frames=32, fps=2)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_run_resumes_to_the_same_file(long_clip, tmp_path, sig):
    """Killed (SIGKILL) or stopped (SIGTERM) mid-run: nothing under the output's name, the finished segments
    kept; the same command then resumes and writes the file an uninterrupted run writes, byte for byte."""
    whole = tmp_path / "whole.mp4"
    subprocess.run(_command(long_clip, whole), check=True)
    out = tmp_path / "out.mp4"
    done = _run_until_segments(_command(long_clip, out), work_folder(out), sig)
    assert done.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130), done.stderr
    if sig == signal.SIGTERM:
        assert done.stderr.splitlines()[-2:] == [
            f"lapsrn: finished segments are kept in {work_folder(out)}: the same command resumes",
            "lapsrn: interrupted",
        ]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] or sig == signal.SIGKILL
    kept = len(list(work_folder(out).glob("*.json"))) - 1  # less plan.json
    assert 1 <= kept < 4
    again = subprocess.run(_command(long_clip, out)[:-1], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"resuming after {kept} finished segment(s)" in again.stderr
    assert out.read_bytes() == whole.read_bytes()
    assert not work_folder(out).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_changed_options_start_over(up, clip, tmp_path):
    """Kept segments made with other settings are not mixed in: the work folder starts again."""
    out = tmp_path / "o.mp4"
    folder = work_folder(out)
    up.upscale_video(clip, out, 2)
    first = out.read_bytes()
    folder.mkdir()
    (folder / "plan.json").write_text('{"scale": 4.0}')
    (folder / "00000.json").write_text("{}")
    logged: list[str] = []
    up.upscale_video(clip, out, 2, log=logged.append)
    assert out.read_bytes() == first and not logged


def _bad(capsys, *args: str) -> str:
    try:
        code = main(["upscale", *args])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bad_inputs_get_one_line(clip, tmp_path, capsys):
    o = str(tmp_path / "o.mp4")
    assert (
        _bad(capsys, "-i", str(tmp_path / "none.mp4"), "-o", o)
        == f"lapsrn: error: {tmp_path / 'none.mp4'}: no such file or folder"
    )
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    assert _bad(capsys, "-i", str(junk), "-o", o).startswith(f"lapsrn: error: {junk}: cannot read it as a video")
    sound = tmp_path / "sound.mp4"
    with av.open(str(sound), "w") as out:
        s = out.add_stream("aac", rate=48000, layout="mono")
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        chunk.sample_rate, chunk.pts = 48000, 0
        out.mux(s.encode(chunk))
        out.mux(s.encode(None))
    assert _bad(capsys, "-i", str(sound), "-o", o) == f"lapsrn: error: {sound}: has no video stream"
    empty = tmp_path / "empty.mkv"
    with av.open(str(empty), "w") as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    assert _bad(capsys, "-i", str(empty), "-o", o) == (
        f"lapsrn: error: {empty}: the file ends before any video data (empty or cut short)"
    )
    blank = tmp_path / "blank.mkv"  # a video stream whose every packet is zeros: nothing decodes
    with av.open(str(clip)) as a, av.open(str(blank), "w") as out:
        v = out.add_stream_from_template(a.streams.video[0])
        for p in a.demux(a.streams.video[0]):
            if p.size:
                zero = av.Packet(bytes(p.size))
                zero.pts, zero.dts, zero.time_base, zero.stream = p.pts, p.dts, p.time_base, v
                out.mux(zero)
    assert _bad(capsys, "-i", str(blank), "-o", o) == (
        f"lapsrn: error: {blank}: its video stream has no frames that can be decoded"
    )
    c = str(clip)
    assert _bad(capsys, "-i", c, "-o", str(tmp_path / "o.webm")) == (
        f"lapsrn: error: {tmp_path / 'o.webm'}: a .webm file cannot hold the aac audio of {clip}"
    )
    assert _bad(capsys, "-i", c, "-o", str(tmp_path / "o.webm"), "--codec", "h264").endswith(
        "a .webm file cannot hold h264 video (choose another --codec)"
    )
    assert _bad(capsys, "-i", c, "-o", o, "--crf", "60") == "lapsrn: error: --crf for h264 must be from 0 to 51, got 60"
    assert _bad(capsys, "-i", c, "-o", o, "--codec", "av1", "--preset", "slow").startswith(
        "lapsrn: error: --preset for av1 must be one of 0, 1,"
    )
    assert "invalid choice: 'h265'" in _bad(capsys, "-i", c, "-o", o, "--codec", "h265")
    assert _bad(capsys, "-i", c, "-o", str(tmp_path / "o.png")).startswith(
        f"lapsrn: error: {tmp_path / 'o.png'}: a video's output must be a video file"
    )
    assert _bad(capsys, "-i", c, "-o", o, "--all-levels") == (
        "lapsrn: error: --all-levels is for images; it does not apply to a video"
    )
    image = REPO / "src/lapsrn/assets/sample.png"
    assert _bad(capsys, "-i", str(image), "-o", str(tmp_path / "x.png"), "--crf", "20") == (
        f"lapsrn: error: --crf is for video inputs; {image} is not one (mp4, m4v, mov, mkv, webm, avi)"
    )
    assert (
        _bad(capsys, "-i", c, "-o", c)
        == f"lapsrn: error: {clip}: is an input file; refusing to replace it (use another -o, or --overwrite)"
    )
    assert not Path(o).exists() and not list(tmp_path.glob(".*"))


def test_corrupt_packets_are_skipped_and_reported(tmp_path, capsys):
    """Damaged video data (bytes zeroed mid-file): the frames that decode are upscaled, no more and no fewer, and
    the run says how many packets it skipped or how many frames it lost; the output is whole."""
    src = make_clip(tmp_path / "c.mp4", frames=24, audio=False)
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 400] = bytes(400)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with av.open(str(bad)) as c:  # what FFmpeg itself decodes of the damaged file, skipping what it cannot
        decodable = 0
        for packet in c.demux(video=0):
            try:
                decodable += len(packet.decode())
            except av.error.InvalidDataError:
                pass
    assert decodable < 24  # the damage is real
    out = tmp_path / "bad_x2.mkv"
    code = main(["upscale", "-i", str(bad), "-o", str(out), "-s", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert len(decoded(out)) == decodable
    assert f"lapsrn: only {decodable} of the 24 frames {bad} announces could be decoded (damaged or cut short)" in err


def test_without_pyav_the_command_names_the_extra(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ModuleNotFoundError, as when not installed
    line = _bad(capsys, "-i", str(clip), "-o", str(tmp_path / "o.mp4"))
    from lapsrn.cli import install_hint

    repo = Path(__file__).resolve().parents[1]
    assert install_hint("video") == f"pip install -c {repo / 'requirements/ci.txt'} -e '{repo}[video]'"  # a clone
    assert line == f"lapsrn: error: lapsrn upscale needs av: {install_hint('video')}"


def test_api_errors_are_video_errors(up, tmp_path):
    with pytest.raises(VideoError, match="unknown codec 'x'"):
        up.upscale_video(tmp_path / "a.mp4", tmp_path / "b.mp4", codec="x")
    with pytest.raises(VideoError, match="a video's output must be a video file"):
        up.upscale_video(tmp_path / "a.mp4", tmp_path / "b.gif")


def test_progress_counts_frames(up, clip, tmp_path):
    seen: list[tuple[int, int | None]] = []
    up.upscale_video(clip, tmp_path / "p.mp4", 2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 12) for i in range(1, 13)]


def test_env_has_no_leftover_threads(up, clip, tmp_path):
    """The decoder and encoder threads end with the call, also when it fails."""
    import threading

    before = set(threading.enumerate())
    up.upscale_video(clip, tmp_path / "t.mp4", 2)
    with pytest.raises(VideoError):
        up.upscale_video(clip, tmp_path / "t.webm", 2)
    assert set(threading.enumerate()) <= before | {t for t in threading.enumerate() if not t.name.startswith("lapsrn")}
    assert not [t for t in threading.enumerate() if t.name in ("lapsrn-decode", "lapsrn-encode")]
    assert os.path.exists(tmp_path / "t.mp4")


def test_missing_encoder_is_one_line(up, clip, tmp_path, monkeypatch):
    """An encoder this PyAV build lacks (wheels built without SVT-AV1, say) is one error line, before any work."""
    from dataclasses import replace

    from lapsrn import video

    monkeypatch.setitem(video.CODECS, "av1", replace(video.CODECS["av1"], encoder="libnonexistent"))
    with pytest.raises(VideoError, match="^this PyAV build has no libnonexistent encoder for --codec av1$"):
        up.upscale_video(clip, tmp_path / "o.mkv", codec="av1")
    assert list(tmp_path.iterdir()) == []


def test_a_budget_too_small_for_one_frame_is_refused_before_any_work(clip, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    line = _bad(capsys, "-i", str(clip), "-o", str(out), "-s", "2", "--max-memory", "1M")
    assert line.startswith("lapsrn: error: --max-memory 1M is too small for x2 of a 64x48 image")
    assert list(tmp_path.iterdir()) == []  # no work folder either


def test_a_failed_run_leaves_no_empty_work_folder(up, clip, tmp_path, monkeypatch):
    """An error mid-run (here the encoder) removes a work folder that holds no finished segment."""
    from lapsrn import video

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(video.WorkFolder, "add", broken)
    with pytest.raises(OSError, match="disk full"):
        up.upscale_video(clip, tmp_path / "o.mp4", 2)
    assert list(tmp_path.iterdir()) == []


def test_uneven_timing_across_segments(up, tmp_path):
    """A frame missing just after a segment boundary (2 fps: segments of 8 frames): each segment's encoder starts
    its decoding times from its own frames, and the output still has every timestamp of the source."""
    pts = [i for i in range(40) if i != 9]
    src = make_clip(tmp_path / "gap.mp4", frames=len(pts), fps=2, pts=pts, audio=False)
    for suffix in (".mp4", ".mkv"):
        out = tmp_path / f"gap_x2{suffix}"
        up.upscale_video(src, out, 2)
        assert [f.pts * f.time_base for f in decoded(out)] == [f.pts * f.time_base for f in decoded(src)]


def test_outputs_the_muxer_or_encoder_refuse_are_refused_before_any_work(up, clip, tmp_path, capsys):
    """AV1 in .mov (listed by FFmpeg, refused by its muxer), frames wider than x264 takes, AVI: one line each,
    before any frame is upscaled, nothing left behind."""
    with pytest.raises(VideoError, match=r"o\.mov: av1 at 128x96 in a \.mov file is refused"):
        up.upscale_video(clip, tmp_path / "o.mov", 2, codec="av1")
    wide = make_clip(tmp_path / "wide.mp4", w=4200, h=16, frames=1, audio=False)
    with pytest.raises(VideoError, match=r"h264 at 16800x64 in a \.mp4 file is refused"):
        up.upscale_video(wide, tmp_path / "wide_x4.mp4", 4)
    line = _bad(capsys, "-i", str(clip), "-o", str(tmp_path / "o.avi"))
    avi = tmp_path / "o.avi"
    assert line == f"lapsrn: error: {avi}: AVI cannot keep the frames' timestamps; write .mkv, .mp4, .mov or .webm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.mp4"]


def test_av1_and_quiet_means_quiet(clip, tmp_path):
    """SVT-AV1 encodes (its banner silenced), and --quiet prints nothing at all."""
    out = tmp_path / "a.mkv"
    done = subprocess.run(_command(clip, out, "--codec", "av1"), capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    frames = decoded(out)
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (128, 96)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name in ("libdav1d", "av1", "libaom-av1")


def test_a_size_change_mid_stream_is_one_line_and_leaves_no_thread(tmp_path, capsys):
    """Two MPEG-TS clips of different sizes joined byte for byte (TS carries its headers in-band): the run stops
    with one line when the size changes, its threads end, and nothing is written."""
    import threading

    a = make_clip(tmp_path / "a.ts", frames=3, audio=False)
    b = make_clip(tmp_path / "b.ts", w=32, h=48, frames=3, audio=False)
    both = tmp_path / "both.mkv"  # the extension only says "a video": FFmpeg reads the content as TS
    both.write_bytes(a.read_bytes() + b.read_bytes())
    line = _bad(capsys, "-i", str(both), "-o", str(tmp_path / "both_x2.mkv"), "-s", "2", "--quiet")
    assert line == "lapsrn: error: the video changes size mid-stream (64x48, then 32x48): lapsrn writes one size"
    assert not [t for t in threading.enumerate() if t.name in ("lapsrn-decode", "lapsrn-encode")]
    assert not (tmp_path / "both_x2.mkv").exists()


def test_skip_existing_and_image_only_options(clip, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"already here")
    assert main(["upscale", "-i", str(clip), "-o", str(out), "-s", "2", "--skip-existing"]) == 0
    assert capsys.readouterr().err == f"lapsrn: {out} exists; skipped (--skip-existing)\n"
    assert out.read_bytes() == b"already here"
    for flag, value in (("--quality", "80"), ("--png-compression", "6")):
        line = _bad(capsys, "-i", str(clip), "-o", str(out), flag, value)
        assert line == f"lapsrn: error: {flag} is for images; it does not apply to a video"


def test_matroska_duration_comes_from_the_video_not_the_audio(up, tmp_path):
    """An MKV whose audio outlasts its video: the frame total is the video's, and nothing is said to be lost."""
    short = make_clip(tmp_path / "v.mp4", frames=24, audio=False)
    long_audio = make_clip(tmp_path / "a.mp4", frames=72)
    src = tmp_path / "long_audio.mkv"
    with av.open(str(short)) as v, av.open(str(long_audio)) as a, av.open(str(src), "w") as out:
        streams = {"video": out.add_stream_from_template(v.streams.video[0])}
        streams["audio"] = out.add_stream_from_template(a.streams.audio[0])
        for c, kind in ((v, "video"), (a, "audio")):
            for p in c.demux(getattr(c.streams, kind)[0]):
                if p.size:
                    p.stream = streams[kind]
                    out.mux(p)
    seen, logged = [], []
    up.upscale_video(src, tmp_path / "o.mkv", 2, progress=lambda d, t: seen.append(t), log=logged.append)
    assert logged == [] and len(seen) == 24
    assert set(seen) <= {24, 25}  # estimated from the video track's duration, which counts its last frame's length


def test_video_needs_no_torch(clip, tmp_path):
    code = "import sys; sys.modules['torch'] = None\nfrom lapsrn.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "o.mkv"
    done = subprocess.run([sys.executable, "-c", code, *_command(clip, out)[3:]], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(decoded(out)) == 12
