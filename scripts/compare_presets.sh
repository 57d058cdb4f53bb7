#!/usr/bin/env bash
# The papers' optimiser recipe against our fast one at the same small CPU budget:
# 300 steps of 12 patches of 48x48 (scales 2, 4, 8), Set5 x4 PSNR every 50 steps.
set -euo pipefail
cd "$(dirname "$0")/.."
# (the fast preset's 200-step warm-up is shortened to 20 to fit in 300 steps)
for p in paper fast; do
  extra=(); [ "$p" = fast ] && extra=(--warmup 20)
  lapsrn train --preset "$p" --steps 300 --batch 12 --patch 48 --val-every 50 "${extra[@]}" \
    --val-dirs ../shared/datasets/test/Set5 --out "runs/compare_$p" --overwrite --quiet
done
lapsrn plot runs/compare_paper/log.csv runs/compare_fast/log.csv -o docs/presets.png
