#!/usr/bin/env bash
# Score the bundled default model and, beside it, the authors' MS-LapSRN D5R2 (same architecture)
# on Set5, Set14 and BSDS100 at x2, x4, x8; then build docs/results/default_table.md together with
# the official rows from scripts/reproduce_official.sh. Usage: bash scripts/evaluate_default.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/datasets/test
T=${1:-2}
SETS=(-d "$D/Set5" -d "$D/Set14" -d "$D/BSDS100")
lapsrn evaluate --threads "$T" "${SETS[@]}" -s 2 -s 4 -s 8 --json docs/results/default.json
lapsrn evaluate --threads "$T" -m ../shared/weights/official/MSLapSRN_D5R2.mat "${SETS[@]}" -s 2 -s 4 -s 8 \
  --no-bicubic --json docs/results/official_MSLapSRN_D5R2.json
python scripts/results_table.py docs/results/default.json docs/results/official_MSLapSRN_D5R2.json \
  docs/results/official_MSLapSRN_D5R8.json docs/results/official_LapSRN_x*.json > docs/results/default_table.md
