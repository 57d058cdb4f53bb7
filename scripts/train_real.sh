#!/usr/bin/env bash
# The bundled `real` model: the bundled default (MS-LapSRN D5R2 SS) fine-tuned on degraded inputs --
# blur, a random downsampling kernel, noise and JPEG of the LR (docs/TRAINING.md, "Degradations"),
# 20 % of patches clean -- so that it upscales JPEGs and noisy photos without amplifying their artefacts.
# Ran on the 2-core CPU (docs/MODEL_CARD.md gives the wall time). Resumable like scripts/train_default.sh.
# Usage: bash scripts/train_real.sh [DATA]   (DATA defaults to ../shared/datasets)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-../shared/datasets}
lapsrn train --preset fast --train-dirs "$D/train/T91" "$D/train/BSDS200" --val-dirs "$D/test/Set5" "$D/test/Set14" \
  --init src/lapsrn/weights/mslapsrn_d5r2.safetensors --degrade-clean 0.2 --degrade-blur 0.3 --degrade-noise 10 \
  --degrade-jpeg 30 95 --steps "${STEPS:-900}" --batch 32 --patch 64 --lr 2e-4 --warmup 50 --val-every 300 \
  --out runs/real --quiet --resume
