"""Lossless WebP copies of the training and validation folders, for carrying to a remote GPU machine.

    python scripts/pack_data.py ../shared/datasets packed
    bash scripts/train_default.sh packed

Lossless WebP holds the same pixels as the PNGs in about two thirds of the bytes; every
file is decoded again and compared, so training on the copy is training on the original.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

FOLDERS = ["train/T91", "train/BSDS200", "test/Set5", "test/Set14"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args()
    for folder in FOLDERS:
        out = args.dst / folder
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted((args.src / folder).iterdir()):
            with Image.open(path) as im:
                im.load()
                target = out / f"{path.stem}.webp"
                im.save(target, lossless=True, quality=100, method=4)
                with Image.open(target) as back:
                    assert np.array_equal(np.asarray(back.convert(im.mode)), np.asarray(im)), path
        print(f"{folder}: {len(list(out.iterdir()))} files")


if __name__ == "__main__":
    main()
