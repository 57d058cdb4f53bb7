"""``lapsrn app``: a local page to upscale one's own images and compare models with sliders.

Gradio is the field's convention for model demos: an upload box, an image comparison slider, file
downloads, a queue and a progress bar come built in, served by one local process, so there is no
web code of our own to keep. The page runs what ``lapsrn upscale`` runs -- the same engine, memory
budget and file writer -- so a download is byte for byte the command's output for the same settings.
It needs nothing from the internet: Gradio serves its scripts and fonts itself, and its usage
analytics are switched off before it is imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported
import gradio as gr  # noqa: E402 -- after the line above; its handlers' gr.Request annotations need it here

if TYPE_CHECKING:
    from .inference import Upscaler

MODELS = ("default", "real", "gan", "bicubic")  # bicubic: the baseline every model is judged against
SCALES = ("2", "3", "4", "8")
ORIGINAL = "original"
PREVIEW_SIDE = 2048  # the sliders show outputs shrunk to this longest side; downloads are full size


class Cancelled(Exception):
    """The user pressed Cancel: raised from the engine's progress callback, between bands."""


@dataclass
class Results:
    """One run's outputs, kept in the browser session: downloads and what the sliders show."""

    scale: str = ""
    files: dict[tuple[str, str], Path] = field(default_factory=dict)  # (image name, model) -> output PNG
    previews: dict[tuple[str, str], Path] = field(default_factory=dict)  # the same, small enough to show
    problems: list[str] = field(default_factory=list)

    def images(self) -> list[str]:
        return list(dict.fromkeys(name for name, model in self.previews if model != ORIGINAL))

    def models(self) -> list[str]:
        return [ORIGINAL, *dict.fromkeys(model for _, model in self.files)]


def bicubic_file(src: Path, dst: Path, scale: float) -> None:
    """The papers' baseline as a file: MATLAB bicubic of every channel (and alpha), written like the models'."""
    from dataclasses import replace

    from .imaging import bicubic, quantize
    from .io import read_image, write_image
    from .upscale import check_output_size, sample_type

    pic = read_image(src)
    check_output_size(*pic.pixels.shape[:2], scale)
    dtype = sample_type(pic.bits)
    alpha = None if pic.alpha is None else quantize(bicubic(pic.alpha, scale), dtype)
    write_image(replace(pic, pixels=quantize(bicubic(pic.pixels, scale), dtype), alpha=alpha), dst)


def preview(path: Path, size: tuple[int, int], dst: Path, nearest: bool = False) -> Path:
    """An 8-bit RGB(A) copy of an image at ``size`` shrunk to PREVIEW_SIDE at most, for the sliders;
    ``nearest`` (the original) shows its pixels as they are, enlarged."""
    from PIL import Image

    scale = min(1.0, PREVIEW_SIDE / max(size))
    size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    with Image.open(path) as im:
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        if im.size == size:
            if path.suffix.lower() == ".png" and im.mode in ("RGB", "RGBA"):
                return path
        method = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
        im.resize(size, method).save(dst)
    return dst


class Studio:
    """What the page serves: models loaded once, a work folder, a cancel flag per browser session."""

    def __init__(self, max_memory: int, threads: int | None = None) -> None:
        self.max_memory, self.threads = max_memory, threads
        self.work = Path(tempfile.mkdtemp(prefix="lapsrn-app-"))
        self.upscalers: dict[str, Upscaler] = {}
        self.cancels: dict[str, threading.Event] = {}

    def upscaler(self, model: str) -> Upscaler:
        """A bundled model by name or an uploaded weights file, on the CPU engine, under the page's budget."""
        if model not in self.upscalers:
            import lapsrn

            self.upscalers[model] = lapsrn.load(model, max_memory=self.max_memory, device="cpu", threads=self.threads)
        return self.upscalers[model]

    def cancel(self, request: gr.Request) -> None:
        """Cancel: the running job of this browser session stops at its next band."""
        self.cancels.setdefault(request.session_hash, threading.Event()).set()

    def run(self, files, scale: str, models: list[str], weights, request: gr.Request, progress=None):
        """Upscale every upload with every chosen model; yields the page's updates after each output, so results
        appear as they come and Cancel takes effect between them (and, through the flag, between bands)."""
        uploads = [Path(f) for f in files or []]
        chosen = list(models or []) + ([str(weights)] if weights else [])
        if not uploads:
            raise gr.Error("Drop one or more images first.")
        if not chosen:
            raise gr.Error("Choose at least one model.")
        cancel = self.cancels.setdefault(request.session_hash, threading.Event())
        cancel.clear()
        out = Path(tempfile.mkdtemp(dir=self.work))
        results = Results(scale)
        total = len(uploads) * len(chosen)
        for i, src in enumerate(uploads):
            for j, model in enumerate(chosen):
                label = Path(model).stem if model == weights else model
                step = i * len(chosen) + j
                if progress is not None:
                    progress((step, total), desc=f"{src.name}: {label}")
                try:
                    if cancel.is_set():
                        raise Cancelled
                    self._one(src, model, label, float(scale), out, results, cancel, progress, step, total)
                except Cancelled:
                    results.problems.append("Cancelled.")
                    yield self.updates(results)
                    return
                except (ValueError, MemoryError, OSError) as e:  # ImageError and WeightsError are ValueErrors
                    reason = f"out of memory ({e})" if isinstance(e, MemoryError) else str(e).strip().splitlines()[0]
                    reason = reason.removeprefix(f"{src}: ")  # the upload's temp path says nothing to the user
                    results.problems.append(f"{src.name}, {label}: {reason}")
                    gr.Warning(results.problems[-1])
                if step + 1 < total:
                    yield self.updates(results, final=False)
        yield self.updates(results)

    def _one(self, src, model, label, scale, out, results, cancel, progress, step, total) -> None:
        """One upload through one model into ``out``, its preview and the original's beside it."""
        from PIL import Image

        from .upscale import upscale_file

        dst = out / f"{src.stem}_x{scale:g}_{label}.png"
        if model == "bicubic":
            bicubic_file(src, dst, scale)
        else:
            up = self.upscaler(model)

            def bands(done: int, rows: int) -> None:
                if cancel.is_set():
                    raise Cancelled
                if progress is not None:
                    progress((step + done / max(rows, 1), total), desc=f"{src.name}: {label}")

            up.progress = bands
            try:
                upscale_file(up, src, dst, scale)
            finally:
                up.progress = None
        with Image.open(dst) as im:
            size = im.size
        results.files[(src.name, label)] = dst
        shown = out / "previews"
        shown.mkdir(exist_ok=True)
        results.previews[(src.name, label)] = preview(dst, size, shown / dst.name)
        if (src.name, ORIGINAL) not in results.previews:
            results.previews[(src.name, ORIGINAL)] = preview(src, size, shown / f"{src.stem}_original.png", True)

    def updates(
        self,
        results: Results,
        image: str | None = None,
        left: str | None = None,
        right: str | None = None,
        final: bool = True,
    ):
        """The page's outputs for ``results``: message, both sliders, the pickers and the downloads. The message
        starts with "Done:" once a run has ended, "Working:" while it goes on."""
        images, models = results.images(), results.models()
        image = image if image in images else (images[0] if images else None)
        made = [m for m in models if m != ORIGINAL and (image, m) in results.previews]
        left = left if left in made else (made[0] if made else None)
        right = right if right in made and right != left else next((m for m in made if m != left), left)
        shown = lambda m: str(results.previews[(image, m)]) if (image, m) in results.previews else None  # noqa: E731
        downloads = [str(p) for p in results.files.values()]
        if len(downloads) > 1:
            downloads.append(str(self._zip(results)))
        done = f"{'Done' if final else 'Working'}: {len(results.files)} output(s) at x{results.scale}."
        message = "\n\n".join([done, *(f"**{p}**" for p in results.problems)]).strip()
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

    def _zip(self, results: Results) -> Path:
        """Every output in one zip (stored, not recompressed: PNG is compressed already)."""
        first = next(iter(results.files.values()))
        path = first.parent / "lapsrn_outputs.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            for p in results.files.values():
                z.write(p, p.name)
        return path

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def build(studio: Studio) -> gr.Blocks:
    """The page: uploads and choices on the left, the two sliders, the pickers and the downloads on the right."""
    with gr.Blocks(title="lapsrn") as page:
        gr.Markdown("## lapsrn: upscale images with Laplacian pyramid networks")
        results = gr.State(Results())
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="Images", file_count="multiple", file_types=["image"], elem_id="uploads")
                scale = gr.Radio(list(SCALES), value="4", label="Scale", elem_id="scale")
                models = gr.CheckboxGroup(list(MODELS), value=["default"], label="Models", elem_id="models")
                weights = gr.File(
                    label="Or your own weights (.safetensors, or the authors' .mat)",
                    file_types=[".safetensors", ".mat"],
                    elem_id="weights",
                )
                with gr.Row():
                    run = gr.Button("Upscale", variant="primary", elem_id="run")
                    stop = gr.Button("Cancel", elem_id="cancel")
                message = gr.Markdown(elem_id="message")
            with gr.Column(scale=2):
                before = gr.ImageSlider(label="Original | model", type="filepath", format="png", elem_id="before")
                versus = gr.ImageSlider(label="Model | model", type="filepath", format="png", elem_id="versus")
                with gr.Row():
                    image = gr.Dropdown(label="Image", choices=[], elem_id="image")
                    left = gr.Dropdown(label="Left model", choices=[], elem_id="left")
                    right = gr.Dropdown(label="Right model", choices=[], elem_id="right")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        outputs = [results, message, before, versus, image, left, right, downloads]

        def upscale(files, scale, models, weights, request: gr.Request, progress=gr.Progress()):
            yield from studio.run(files, scale, models, weights, request, progress)

        run.click(upscale, [files, scale, models, weights], outputs, concurrency_limit=1)
        stop.click(studio.cancel, None, None, queue=False)  # beside the queue: it runs while the job does
        pick = [results, image, left, right]
        for picker in (image, left, right):
            picker.input(lambda r, i, a, b: studio.updates(r, i, a, b, final=bool(r.scale)), pick, outputs, queue=False)
    return page


def serve(host: str, port: int, share: bool, max_memory: int, threads: int | None) -> None:
    """Start the page and block until Ctrl-C. Only this machine can reach it unless ``host`` says otherwise."""
    studio = Studio(max_memory, threads)
    try:
        page = build(studio)
        page.queue(default_concurrency_limit=1, max_size=32)
        page.launch(
            server_name=host,
            server_port=port,
            share=share,
            inbrowser=False,
            ssr_mode=False,
            theme=gr.themes.Default(),
            max_file_size="512mb",
            footer_links=[],
            quiet=False,
        )
    finally:
        studio.close()
