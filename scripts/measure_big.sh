#!/usr/bin/env bash
# Peak memory of a large upscale: a 2048x2048 image (a BSDS100 photo resized with MATLAB bicubic)
# to 8192x8192 with the bundled model and default flags, under /usr/bin/time -v.
# Writes docs/results/big_upscale.txt. Usage: bash scripts/measure_big.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python - "$work/in.png" <<'PY'
import sys
import numpy as np
from PIL import Image
from lapsrn import protocol as P
from lapsrn.evaluate import image_files
from pathlib import Path
src = np.asarray(Image.open(image_files(Path("../shared/datasets/test/BSDS100"))[0]).convert("RGB")) / 255.0
Image.fromarray(P.im2uint8(np.clip(P.imresize(src, size=(2048, 2048)), 0, 1))).save(sys.argv[1])
PY
/usr/bin/time -v lapsrn upscale -i "$work/in.png" -o "$work/out.png" -s 4 2> "$work/time.txt"
size=$(python -c "from PIL import Image; print('x'.join(map(str, Image.open('$work/out.png').size)))")
{
  echo "lapsrn upscale -i in.png (2048x2048) -o out.png -s 4   -> $size"
  grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$work/time.txt" | sed 's/^\s*//'
} | tee docs/results/big_upscale.txt
