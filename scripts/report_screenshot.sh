#!/usr/bin/env bash
# The comparison report on Set14 x4 (bundled default, official LapSRN_x4, bicubic) and a screenshot of it
# in headless Chromium: docs/report_set14_x4.html and docs/report_set14_x4.png.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-}
lapsrn report -d ../shared/datasets/test/Set14 -s 4 -m default -m ../shared/weights/official/LapSRN_x4.mat \
  --crops 2 ${LOG:+--log "$LOG"} -o docs/report_set14_x4.html
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
  --window-size=1200,1500 --screenshot="$PWD/docs/report_set14_x4.png" "file://$PWD/docs/report_set14_x4.html" 2>/dev/null
rm -rf "$profile"
