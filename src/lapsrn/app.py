"""``lapsrn app``: a local page to upscale one's own images and compare models with sliders.

Gradio is the field's convention for model demos: an upload box, an image comparison slider, file
downloads, a queue and a progress bar come built in, served by one local process, so there is no
web code of our own to keep. The page runs what ``lapsrn upscale`` runs -- the same engine, memory
budget and file writer -- so a model's download is byte for byte the command's output for the same
settings. It needs nothing from the internet: Gradio serves its scripts and fonts itself, and its
usage analytics are switched off.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr  # noqa: E402 -- its handlers' gr.Request annotations need it at module level

if TYPE_CHECKING:
    from .api import Upscaler

MODELS = ("default", "real", "gan", "bicubic")  # bicubic: the baseline every model is judged against
SCALES = ("2", "3", "4", "8")
ORIGINAL = "original"
PREVIEW_SIDE = 2048  # the sliders show outputs shrunk to this longest side; downloads are full size
CACHE_SECONDS = 3600  # Gradio's copies of uploads and outputs, and our runs' folders, are deleted after an hour


class Cancelled(Exception):
    """The user pressed Cancel: raised from the engine's progress callback, between bands."""


@dataclass
class Results:
    """One run's outputs, kept in the browser session: downloads and what the sliders show."""

    scale: str = ""
    files: dict[tuple[str, str], Path] = field(default_factory=dict)  # (image name, model) -> output PNG
    previews: dict[tuple[str, str], Path] = field(default_factory=dict)  # the same, small enough to show
    problems: list[str] = field(default_factory=list)
    zip: Path | None = None  # every output, made once the run has ended
    done: bool = False

    def images(self) -> list[str]:
        return list(dict.fromkeys(name for name, model in self.previews if model != ORIGINAL))

    def models(self) -> list[str]:
        return list(dict.fromkeys(model for _, model in self.files))


def bicubic_file(src: Path, dst: Path, scale: float) -> None:
    """The papers' baseline as a file: MATLAB bicubic of every channel (and alpha), written like the models'.
    In bands of rows with a margin for the kernel (``colour.bicubic_bands``), which equals resizing the whole
    image, so memory stays a few bands' worth beside the input and the 8- or 16-bit output."""
    from dataclasses import replace

    from .colour import bicubic_bands
    from .io import read_image, write_image
    from .pictures import check_output_size, sample_type

    pic = read_image(src)
    h, w = pic.pixels.shape[:2]
    check_output_size(h, w, scale)
    dtype, s = sample_type(pic.bits), int(scale)
    alpha = None if pic.alpha is None else bicubic_bands(pic.alpha, s, dtype)
    write_image(replace(pic, pixels=bicubic_bands(pic.pixels, s, dtype), alpha=alpha), dst)


def preview(path: Path, size: tuple[int, int], dst: Path, nearest: bool = False) -> Path:
    """An 8-bit copy of an image for the sliders, at ``size`` shrunk to PREVIEW_SIDE at most. The original
    (``nearest``: its pixels enlarged as they are) and any 16-bit or float output are read as the command
    reads them (upright, any depth); an 8-bit output is shrunk by Pillow straight from its file."""
    from PIL import Image

    from .io import read_image, to_uint8

    scale = min(1.0, PREVIEW_SIDE / max(size))
    size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    with Image.open(path) if not nearest and path.suffix.lower() == ".png" else contextlib.nullcontext() as im:
        if im is not None and im.mode in ("RGB", "RGBA", "L", "LA"):
            if im.size == size:
                return path
            im.resize(size, Image.Resampling.LANCZOS).save(dst)
            return dst
    pic = read_image(path)
    pixels = to_uint8(pic.pixels if pic.alpha is None else np.dstack([pic.pixels, pic.alpha]))
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    Image.fromarray(pixels).resize(size, method).save(dst)
    return dst


def display_names(uploads: list[Path]) -> list[tuple[str, str]]:
    """Each upload's (name on the page, stem of its outputs' names), both unique: its file name and its stem,
    with the extension added to stems that collide and a count to what is still the same (photo.png and
    photo.jpg give photo_png and photo_jpg; a second photo.png gives "photo.png (2)" and photo_png_2)."""
    stems = Counter(p.stem for p in uploads)
    labels_seen: Counter = Counter()
    stems_seen: Counter = Counter()
    names = []
    for p in uploads:
        stem = p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower() or 'file'}"
        labels_seen[p.name] += 1
        stems_seen[stem] += 1
        k, n = labels_seen[p.name], stems_seen[stem]
        names.append((p.name if k == 1 else f"{p.name} ({k})", stem if n == 1 else f"{stem}_{n}"))
    return names


def _why(e: BaseException, *paths: Path) -> str:
    """An error's first line for the page, without the temp folders Gradio keeps uploads in."""
    text = f"out of memory ({e})" if isinstance(e, MemoryError) else (str(e).strip().splitlines() or [""])[0]
    for p in paths:
        text = text.replace(f"{p}: ", "").replace(str(p), p.name)
    return text or type(e).__name__


class Studio:
    """What the page serves: models loaded once, a work folder, a cancel flag per browser session."""

    def __init__(self, max_memory: int, threads: int | None = None) -> None:
        self.max_memory, self.threads = max_memory, threads
        self.work = Path(tempfile.mkdtemp(prefix="lapsrn-app-"))
        self.upscalers: dict[str, Upscaler] = {}
        self.cancels: dict[str, threading.Event] = {}
        self.runs: dict[str, Path] = {}  # each session's last run folder, deleted when it starts another

    def upscaler(self, model: str) -> Upscaler:
        """A bundled model by name or an uploaded weights file, on the CPU engine, under the page's budget."""
        if model not in self.upscalers:
            import lapsrn

            self.upscalers[model] = lapsrn.load(model, max_memory=self.max_memory, device="cpu", threads=self.threads)
        return self.upscalers[model]

    def arm(self, request: gr.Request) -> str:
        """Upscale pressed: a Cancel pressed before is forgotten; the job then waits for its turn."""
        self.cancels.setdefault(request.session_hash, threading.Event()).clear()
        return "Waiting for the queue..."

    def cancel(self, request: gr.Request) -> None:
        """Cancel: this session's job stops at its next band, or at its start if it is still queued."""
        self.cancels.setdefault(request.session_hash, threading.Event()).set()

    def run(self, files, scale: str, models: list[str], weights, request: gr.Request, progress=None):
        """Upscale every upload with every chosen model; yields the page's updates after each output, so results
        appear as they come; Cancel takes effect between them and, through the flag, between bands."""
        uploads = [Path(f) for f in files or []]
        chosen = list(models or [])
        if not uploads or not (chosen or weights):
            missing = "Drop one or more images first." if not uploads else "Choose at least one model."
            yield self.updates(Results(scale, problems=[missing], done=True))
            return
        session = request.session_hash
        cancel = self.cancels.setdefault(session, threading.Event())
        if session in self.runs:  # the page no longer shows that run: its files can go
            shutil.rmtree(self.runs.pop(session), ignore_errors=True)
        out = self.runs[session] = Path(tempfile.mkdtemp(dir=self.work))
        results = Results(scale)
        if weights:
            chosen += self._weights(Path(weights), results)
        names = display_names(uploads)
        total = max(1, len(uploads) * len(chosen))
        try:
            for i, (src, (name, stem)) in enumerate(zip(uploads, names)):
                for j, (model, label) in enumerate(self._labels(chosen)):
                    step = i * len(chosen) + j
                    if progress is not None:
                        progress((step, total), desc=f"{name}: {label}")
                    try:
                        if cancel.is_set():
                            raise Cancelled
                        where = (name, stem, label, float(scale), out)
                        self._one(src, model, where, results, cancel, progress, step, total)
                    except (ValueError, MemoryError, OSError, RuntimeError) as e:  # ImageError, WeightsError too
                        results.problems.append(f"{name}, {label}: {_why(e, src, Path(model))}")
                        gr.Warning(results.problems[-1])
                    if step + 1 < total:
                        yield self.updates(results)
        except Cancelled:
            results.problems.append("Cancelled.")
        finally:
            cancel.clear()
        results.done = True
        if len(results.files) > 1:
            results.zip = self._zip(results, out)
        yield self.updates(results)

    def _weights(self, path: Path, results: Results) -> list[str]:
        """Uploaded weights, loaded once: [their path] to run, or [] with the reason among the problems."""
        try:
            self.upscaler(str(path))
        except (ValueError, OSError, RuntimeError) as e:
            reason = _why(e, path)
            if path.suffix.lower() == ".mat" and "_opts.mat" in reason:
                reason += "; convert it with `lapsrn convert` and drop the .safetensors"
            results.problems.append(f"{path.name}: {reason}")
            return []
        return [str(path)]

    @staticmethod
    def _labels(chosen: list[str]) -> list[tuple[str, str]]:
        """(model, label): an uploaded file is labelled by its name, never as a bundled model or the original."""
        out = []
        for model in chosen:
            label = model if model in MODELS else Path(model).stem
            if model not in MODELS and label in (*MODELS, ORIGINAL):
                label += "-uploaded"
            out.append((model, label))
        return out

    def _one(self, src, model, where, results, cancel, progress, step, total) -> None:
        """One upload through one model into ``out`` (``where``: the upload's name and stem, the model's label,
        the scale, the run's folder), its preview and the original's beside it."""
        from .io import image_size
        from .pictures import upscale_file

        name, stem, label, scale, out = where
        dst = out / f"{stem}_x{scale:g}_{label}.png"
        if model == "bicubic":
            bicubic_file(src, dst, scale)
        else:
            up = self.upscaler(model)

            def bands(done: int, rows: int) -> None:
                if cancel.is_set():
                    raise Cancelled
                if progress is not None:
                    progress((step + done / max(rows, 1), total), desc=f"{name}: {label}")

            up.progress = bands
            try:
                upscale_file(up, src, dst, scale)
            finally:
                up.progress = None
        w, h = image_size(dst)  # a PNG we wrote: its header says
        results.files[(name, label)] = dst
        shown = out / "previews"
        shown.mkdir(exist_ok=True)
        results.previews[(name, label)] = preview(dst, (w, h), shown / dst.name)
        if (name, ORIGINAL) not in results.previews:
            results.previews[(name, ORIGINAL)] = preview(src, (w, h), shown / f"{stem}_original.png", True)

    def updates(self, results: Results, image: str | None = None, left: str | None = None, right: str | None = None):
        """The page's outputs for ``results``: message, both sliders, the pickers and the downloads. The message
        starts with "Done:" once a run has ended, "Working:" while it goes on."""
        images = results.images()
        image = image if image in images else (images[0] if images else None)
        made = [m for m in results.models() if (image, m) in results.previews]
        left = left if left in made else (made[0] if made else None)
        right = right if right in made and right != left else next((m for m in made if m != left), left)
        shown = lambda m: str(results.previews[(image, m)]) if (image, m) in results.previews else None  # noqa: E731
        downloads = [str(p) for p in results.files.values()] + ([str(results.zip)] if results.zip else [])
        done = f"{'Done' if results.done else 'Working'}: {len(results.files)} output(s) at x{results.scale}."
        message = "\n\n".join([done, *(f"**{p}**" for p in results.problems)])
        return (
            results,
            message,
            gr.update(value=(shown(ORIGINAL), shown(left)) if left else None, label=f"{ORIGINAL} | {left or 'model'}"),
            gr.update(
                value=(shown(left), shown(right)) if left else None, label=f"{left or 'model'} | {right or 'model'}"
            ),
            gr.update(choices=images, value=image),
            gr.update(choices=made, value=left),
            gr.update(choices=made, value=right),
            downloads or None,
        )

    @staticmethod
    def _zip(results: Results, folder: Path) -> Path:
        """Every output in one zip (stored, not recompressed: PNG is compressed already)."""
        path = folder / "lapsrn_outputs.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            for p in results.files.values():
                z.write(p, p.name)
        return path

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def build(studio: Studio) -> gr.Blocks:
    """The page: uploads and choices on the left, the two sliders, the pickers and the downloads on the right."""
    with gr.Blocks(title="lapsrn", delete_cache=(CACHE_SECONDS, CACHE_SECONDS)) as page:
        gr.Markdown("## lapsrn: upscale images with Laplacian pyramid networks")
        results = gr.State(Results())
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="Images", file_count="multiple", file_types=["image"], elem_id="uploads")
                scale = gr.Radio(list(SCALES), value="4", label="Scale", elem_id="scale")
                models = gr.CheckboxGroup(list(MODELS), value=["default"], label="Models", elem_id="models")
                weights = gr.File(
                    label="Or your own weights (.safetensors, or the authors' LapSRN .mat)",
                    file_types=[".safetensors", ".mat"],
                    elem_id="weights",
                )
                with gr.Row():
                    run = gr.Button("Upscale", variant="primary", elem_id="run")
                    stop = gr.Button("Cancel", elem_id="cancel")
                message = gr.Markdown(elem_id="message")
            with gr.Column(scale=2):
                before = gr.ImageSlider(label="original | model", type="filepath", format="png", elem_id="before")
                versus = gr.ImageSlider(label="model | model", type="filepath", format="png", elem_id="versus")
                with gr.Row():
                    image = gr.Dropdown(label="Image", choices=[], elem_id="image")
                    left = gr.Dropdown(label="Left model", choices=[], elem_id="left")
                    right = gr.Dropdown(label="Right model", choices=[], elem_id="right")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        outputs = [results, message, before, versus, image, left, right, downloads]

        def upscale(files, scale, models, weights, request: gr.Request, progress=gr.Progress()):
            yield from studio.run(files, scale, models, weights, request, progress)

        armed = run.click(studio.arm, None, message, queue=False)
        armed.then(upscale, [files, scale, models, weights], outputs, concurrency_limit=1)
        stop.click(studio.cancel, None, None, queue=False)  # beside the queue: it lands while the job runs
        for picker in (image, left, right):
            picker.input(studio.updates, [results, image, left, right], outputs, queue=False)
    return page


def serve(host: str, port: int, share: bool, max_memory: int, threads: int | None) -> None:
    """Start the page and block until Ctrl-C or SIGTERM, then delete its files. Only this machine can reach it
    unless ``host`` says otherwise; a public link only with ``share``."""
    from .engine import native, reuse_freed_memory

    native.notice = lambda message, warning: print(f"lapsrn: {message}", file=sys.stderr)
    native.functions()  # compiled now on a fresh machine (saying so), not during the first upload
    reuse_freed_memory()  # as the command line does

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    studio = Studio(max_memory, threads)
    page = build(studio)
    page.queue(default_concurrency_limit=1, max_size=32)
    try:
        _, url, public = page.launch(
            server_name=host,
            server_port=port,
            share=share,
            inbrowser=False,
            ssr_mode=False,
            theme=gr.themes.Default(),
            max_file_size="512mb",
            footer_links=[],
            quiet=True,
            prevent_thread_lock=True,
        )
        print(f"lapsrn app: open {url} (Ctrl-C stops it)" + (f"; public link {public}" if public else ""))
        page.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        page.close()
        studio.close()
        signal.signal(signal.SIGTERM, previous)
