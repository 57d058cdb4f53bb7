#!/usr/bin/env bash
# Re-run the authors' released weights under the papers' protocol on Set5, Set14 and BSDS100,
# then rebuild docs/REPRODUCTION.md from the JSON results. Usage: bash scripts/reproduce_official.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
W=../shared/weights/official
D=../shared/datasets/test
T=${1:-2}
run() {  # weights, json name, scales...
  local w=$1 name=$2; shift 2
  local s=(); for x in "$@"; do s+=(-s "$x"); done
  lapsrn evaluate --threads "$T" -m "$W/$w" -d "$D/Set5" -d "$D/Set14" -d "$D/BSDS100" "${s[@]}" \
    --json "docs/results/$name.json"
}
run LapSRN_x2.mat official_LapSRN_x2 2
run LapSRN_x4.mat official_LapSRN_x4 4
run LapSRN_x8.mat official_LapSRN_x8 8
run MSLapSRN_D5R8.mat official_MSLapSRN_D5R8 2 4 8
python scripts/results_table.py docs/results/official_*.json > docs/results/official_table.md
