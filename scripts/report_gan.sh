#!/usr/bin/env bash
# The `gan` model beside the default on textures: the comparison report on Set14 and BSDS100 x4 with the
# texture measure, zoomed crops of fur (Set14 baboon) and grass (BSDS100 img_057) -- ground truth, bicubic,
# default, gan -- and a screenshot in headless Chromium: docs/report_gan_x4.html and docs/report_gan_x4.png.
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/datasets/test
lapsrn report -d "$D/Set14" -d "$D/BSDS100" -s 4 -m default -m gan --texture --images baboon img_057 \
  -o docs/report_gan_x4.html
bash scripts/screenshot.sh docs/report_gan_x4.html docs/report_gan_x4.png 1200,1100
