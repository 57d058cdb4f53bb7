"""Draw the bundled samples (src/lapsrn/assets/sample.png and sample.mp4): made by this project, free to redistribute.

A small LR picture with what super-resolution is judged on: text, thin lines,
circles, a grid and soft gradients; and a two-second clip panning across the
same drawing, with a 440 Hz tone as its audio (needs PyAV: lapsrn[video]).
Deterministic: rerunning gives the same files.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ASSETS = Path(__file__).resolve().parents[1] / "src" / "lapsrn" / "assets"
OUT = ASSETS / "sample.png"
CLIP = ASSETS / "sample.mp4"


def draw() -> Image.Image:
    """The 640x480 drawing both samples are shrunk from."""
    w, h = 640, 480
    yy = np.mgrid[0:h, 0:w][0]
    sky = np.stack([120 + 80 * yy / h, 160 + 60 * yy / h, 230 - 40 * yy / h], axis=-1)
    img = Image.fromarray(sky.astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.ellipse((40, 40, 220, 220), fill=(250, 200, 60), outline=(120, 60, 0), width=6)
    for i in range(12):
        d.line((300 + i * 24, 40, 300 + i * 24, 220), fill=(30, 30, 30), width=3)
        d.line((300, 40 + i * 15, 564, 40 + i * 15), fill=(30, 30, 30), width=2)
    for r in range(10, 120, 14):
        d.ellipse((460 - r, 360 - r, 460 + r, 360 + r), outline=(200, 20, 60), width=4)
    d.rectangle((40, 270, 300, 440), fill=(240, 240, 235), outline=(0, 0, 0), width=4)
    font = ImageFont.load_default(size=56)
    d.text((60, 285), "lapsrn", fill=(10, 10, 80), font=font)
    d.text((60, 355), "x2 x4 x8", fill=(150, 0, 0), font=ImageFont.load_default(size=44))
    return img


def write_clip(img: Image.Image, frames: int = 48, fps: int = 24) -> None:
    """A 128x96 H.264 clip panning across the drawing (shrunk 4x per frame, like the image), AAC tone beside."""
    import av

    from lapsrn.process_bench import mux_tone

    with av.open(str(CLIP), "w", options={"fflags": "+bitexact"}) as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "20", "threads": "1"})
        video.width, video.height, video.pix_fmt = 128, 96, "yuv420p"
        audio = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(frames):
            x = 128 * i // (frames - 1)
            small = img.crop((x, 48, x + 512, 48 + 384)).resize((128, 96), Image.Resampling.LANCZOS)
            out.mux(video.encode(av.VideoFrame.from_image(small)))
        out.mux(video.encode(None))
        mux_tone(out, audio, 48000 * frames // fps)
    print(f"wrote {CLIP} (128x96, {frames} frames at {fps} fps, AAC tone)")


def main() -> None:
    img = draw()
    w, h = img.size
    small = img.resize((w // 4, h // 4), Image.Resampling.LANCZOS)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    small.save(OUT, optimize=True)
    print(f"wrote {OUT} ({small.size[0]}x{small.size[1]})")
    write_clip(img)


if __name__ == "__main__":
    main()
