#!/usr/bin/env bash
# The bundled default model, mslapsrn_d5r2: MS-LapSRN D5R2 SS from scratch on T91 + BSDS200, in three stages.
#   1. CPU-sized: 64 px patches, 3,500 steps (ran on the 2-core CPU: 6,943 s).
#   2. 128 px patches, batch 96, 6,200 steps from stage 1 (ran on one H100: 283 s).
#   3. the same, 18,000 steps from stage 2 at a lower peak lr (ran on one H100: 733 s).
# Every stage resumes from its checkpoint, so running this again after an interruption (or under
# `timeout`, whose SIGTERM makes lapsrn checkpoint the current step) continues where it stopped; a
# finished stage is skipped in seconds. Then the new model is scored and bundled with its own metrics.
# Usage: bash scripts/train_default.sh [DATA]   (DATA defaults to ../shared/datasets; needs train/T91,
#        train/BSDS200, test/Set5, test/Set14 -- any lossless copies, e.g. from scripts/pack_data.py)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-../shared/datasets}
data=(--train-dirs "$D/train/T91" "$D/train/BSDS200" --val-dirs "$D/test/Set5" "$D/test/Set14" --quiet --resume)
big=(--patch 128 --batch 96 --lr-min 1e-6 --warmup 500 --workers "${WORKERS:-8}")
lapsrn train --preset fast "${data[@]}" --steps 3500 --batch 48 --patch 64 --lr 5e-4 --warmup 100 \
  --val-every 500 --out runs/stage1
lapsrn train --preset fast "${data[@]}" "${big[@]}" --init runs/stage1/model.safetensors --lr 3e-4 \
  --steps 6200 --val-every 300 --out runs/stage2
lapsrn train --preset fast "${data[@]}" "${big[@]}" --init runs/stage2/model.safetensors --lr 2e-4 \
  --steps 18000 --val-every 1500 --out runs/stage3
# Bundle the new weights, score the file now bundled (docs/results/default.json and the tables),
# then write its card with those metrics: never the previous model's.
python scripts/bundle_model.py runs/stage3/model.safetensors --command "bash scripts/train_default.sh"
bash scripts/evaluate_default.sh "${THREADS:-2}"
python scripts/bundle_model.py runs/stage3/model.safetensors --command "bash scripts/train_default.sh" \
  --metrics docs/results/default.json
