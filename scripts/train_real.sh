#!/usr/bin/env bash
# The bundled `real` model: the default model (mslapsrn_d5r2, ours) fine-tuned on degraded inputs --
# blur, downsampling kernel, noise and JPEG drawn per patch (lapsrn.degrade), 20 % of patches clean --
# so that JPEG and noisy photos come out without ringing blocks. Targets stay the clean pyramid.
#   1. 64 px patches, batch 48, 1,000 steps from the default's weights on the 2-core CPU.
# Resumable like scripts/train_default.sh (a finished stage is skipped in seconds); then the model is
# scored clean and degraded (scripts/evaluate_real.sh) and bundled with its metrics.
# Usage: bash scripts/train_real.sh [DATA]   (DATA defaults to ../shared/datasets)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-../shared/datasets}
lapsrn train --preset fast --train-dirs "$D/train/T91" "$D/train/BSDS200" --val-dirs "$D/test/Set5" "$D/test/Set14" \
  --init src/lapsrn/weights/mslapsrn_d5r2.safetensors --degrade-clean 0.2 --degrade-blur 0.3 --degrade-noise 10 \
  --degrade-jpeg 30 95 --steps "${STEPS:-1000}" --batch 48 --patch 64 --lr 2e-4 --warmup 50 --val-every 250 \
  --out runs/real --quiet --resume
