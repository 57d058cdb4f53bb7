#!/usr/bin/env bash
# Peak memory of a phone photo's upscale with default flags: a 4000x3000 JPEG (a BSDS100 photo resized with
# MATLAB bicubic, quality 90) to PNG at x2 (held whole), x4 and x3 (the network at x4, its Y resized down band by
# band; both written in strips), each under /usr/bin/time -v,
# beside the same command on a 64x48 JPEG: the process's own overhead (Python, NumPy, Pillow, the engine's
# kernels), which the --max-memory budget (672M by default) does not count.
# Writes docs/results/big_upscale.txt. Usage: bash scripts/measure_big.sh (nothing else running: it times too)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python - "$work" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lapsrn import protocol as P
from lapsrn.evaluate import image_files

work = Path(sys.argv[1])
src = np.asarray(Image.open(image_files(Path("../shared/datasets/test/BSDS100"))[0]).convert("RGB")) / 255.0
Image.fromarray(P.im2uint8(np.clip(P.imresize(src, size=(3000, 4000)), 0, 1))).save(work / "photo.jpg", quality=90)
Image.fromarray(P.im2uint8(np.clip(P.imresize(src, size=(48, 64)), 0, 1))).save(work / "tiny.jpg", quality=90)
PY
measure() {  # input, output, scale: one line of what ran and its peak and wall time
  /usr/bin/time -v lapsrn upscale -i "$work/$1" -o "$work/$2" -s "$3" --quiet 2> "$work/time.txt" || true
  local size=none
  [ -f "$work/$2" ] && size=$(python -c "from PIL import Image; Image.MAX_IMAGE_PIXELS = None; print('x'.join(map(str, Image.open('$work/$2').size)))")
  local rss wall
  rss=$(grep -E "Maximum resident set size" "$work/time.txt" | awk '{print $NF}')
  wall=$(grep -E "Elapsed \(wall clock\)" "$work/time.txt" | awk '{print $NF}')
  printf "lapsrn upscale -i %-9s -o %-8s -s %s  -> %-11s  peak %9s kB  wall %s\n" "$1" "$2" "$3" "$size" \
    "$(python -c "print(f'{$rss:,}')")" "$wall"
  rm -f "$work/$2"
}
version=$(git describe --always --dirty)  # before tee opens the results file, which dirties the tree
{
  echo "# $(lscpu | sed -n 's/^Model name:\s*//p'), $(nproc) cores; lapsrn $version; default --max-memory 672M = 688,128 kB"
  measure tiny.jpg tiny.png 4
  measure photo.jpg x2.png 2
  measure photo.jpg x4.png 4
  measure photo.jpg x3.png 3
  lapsrn upscale -i "$work/photo.jpg" -o "$work/x4.jpg" -s 4 --quiet 2>&1 | sed 's/^/x4 to JPEG: /' || true
} | tee docs/results/big_upscale.txt
