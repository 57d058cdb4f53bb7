"""Draw the bundled sample image (src/lapsrn/assets/sample.png): made by this project, free to redistribute.

A small LR picture with what super-resolution is judged on: text, thin lines,
circles, a grid and soft gradients. Deterministic: rerunning gives the same file.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parents[1] / "src" / "lapsrn" / "assets" / "sample.png"


def main() -> None:
    w, h = 640, 480  # drawn large, then shrunk 4x with antialiasing like a real LR photo
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
    small = img.resize((w // 4, h // 4), Image.Resampling.LANCZOS)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    small.save(OUT, optimize=True)
    print(f"wrote {OUT} ({small.size[0]}x{small.size[1]})")


if __name__ == "__main__":
    main()
