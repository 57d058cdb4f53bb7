#!/usr/bin/env bash
# The comparison report on Set14 x4 (bundled default, official LapSRN_x4, bicubic) and a screenshot of it
# in headless Chromium: docs/report_set14_x4.html and docs/report_set14_x4.png.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-}
lapsrn report -d ../shared/datasets/test/Set14 -s 4 -m default -m ../shared/weights/official/LapSRN_x4.mat \
  --crops 2 ${LOG:+--log "$LOG"} -o docs/report_set14_x4.html
bash scripts/screenshot.sh docs/report_set14_x4.html docs/report_set14_x4.png 1200,1500
