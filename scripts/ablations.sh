#!/usr/bin/env bash
# The papers' ablation studies at laptop scale (docs/ABLATIONS.md): one training run per configuration and
# seed, equal budgets within a study, then the logs, the table and one curve figure per study.
#
# Budget per run (override with the variables): STEPS steps of BATCH patches of PATCH px HR, the fast
# preset (Adam, warm-up, cosine), validated on Set5 and Set14 at x4 every STEPS/4 steps.
# Runs go to runs/ablations/<config>-s<seed>; every run resumes from its checkpoint, so running this again
# after an interruption continues where it stopped and a finished run costs seconds. JOBS runs train at
# once, each on CPUS/JOBS threads.
#
# Studies and their configurations (a configuration shared by several studies trains once; its log is
# copied under each study's name, e.g. lapsrn-d5 is loss-charbonnier, pyramid-progressive, grl-with and
# sharing-separate):
#   loss-{charbonnier,l2}        LapSRN D5 x4, Charbonnier or L2
#   pyramid-{progressive,onestep} LapSRN D5 x4, or OneStep: the same 10 convs at the LR size, then x4
#   grl-{with,without}           LapSRN D5 x4, with or without the image-reconstruction branch
#   sharing-{separate,shared}    LapSRN D5 x4, weights per level or one set for both levels
#   lrl-{ns,ds,ss}               MS-LapSRN D5R${LRL_R:-2} x4, local skips none, distinct-source, shared-source
#   scales-{4,248}               MS-LapSRN D5R2 SS trained on x4 only (= lrl-ss when LRL_R is 2) or on
#                                x2, x4, x8 at once
# Usage: bash scripts/ablations.sh [DATA]   (DATA defaults to ../shared/datasets)
# A longer run of some configurations, apart from the study's runs (then a table of the gap at every checkpoint):
#   RUNS=runs/ablations-long LOGS=docs/results/ablations-long STEPS=2400 SEEDS=0 \
#     ONLY="mslapsrn-d5r2-ns mslapsrn-d5r2-ss" bash scripts/ablations.sh
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-../shared/datasets}
STEPS=${STEPS:-800} BATCH=${BATCH:-18} PATCH=${PATCH:-48} SEEDS=${SEEDS:-"0 1"} JOBS=${JOBS:-2}
CPUS=${CPUS:-$(nproc)} LRL_R=${LRL_R:-2}
THREADS=$(( CPUS / JOBS > 0 ? CPUS / JOBS : 1 ))
RUNS=${RUNS:-runs/ablations} LOGS=${LOGS:-docs/results/ablations} ONLY=${ONLY:-}
mkdir -p "$RUNS" "$LOGS"

# name | flags (the config of each study's variants)
CONFIGS="lapsrn-d5|--arch LapSRN --depth 5 --scales 4
lapsrn-d5-l2|--arch LapSRN --depth 5 --scales 4 --loss l2
onestep-d5|--arch OneStep --depth 5 --scales 4
lapsrn-d5-direct|--arch LapSRN --depth 5 --scales 4 --reconstruction direct
lapsrn-d5-shared|--arch LapSRN --depth 5 --scales 4 --sharing shared
mslapsrn-d5r$LRL_R-ns|--arch MSLapSRN --depth 5 --recursions $LRL_R --skip NS --scales 4
mslapsrn-d5r$LRL_R-ds|--arch MSLapSRN --depth 5 --recursions $LRL_R --skip DS --scales 4
mslapsrn-d5r$LRL_R-ss|--arch MSLapSRN --depth 5 --recursions $LRL_R --skip SS --scales 4
mslapsrn-d5r2-ss|--arch MSLapSRN --depth 5 --recursions 2 --skip SS --scales 4
mslapsrn-d5r2-x248|--arch MSLapSRN --depth 5 --recursions 2 --skip SS --scales 2 4 8"

# study-variant -> configuration
STUDIES="loss-charbonnier lapsrn-d5
loss-l2 lapsrn-d5-l2
pyramid-progressive lapsrn-d5
pyramid-onestep onestep-d5
grl-with lapsrn-d5
grl-without lapsrn-d5-direct
sharing-separate lapsrn-d5
sharing-shared lapsrn-d5-shared
lrl-ns mslapsrn-d5r$LRL_R-ns
lrl-ds mslapsrn-d5r$LRL_R-ds
lrl-ss mslapsrn-d5r$LRL_R-ss
scales-4 mslapsrn-d5r2-ss
scales-248 mslapsrn-d5r2-x248"

train_one() {  # name seed flags...: one run, resumed if it was stopped, skipped if it is finished
  local name=$1 seed=$2; shift 2
  local out=$RUNS/$name-s$seed
  if [ -f "$out/log.csv" ] && grep -q "^$STEPS," "$out/log.csv"; then return 0; fi
  echo "$(date +%T) training $name seed $seed" >&2
  OMP_NUM_THREADS=$THREADS NUMBA_NUM_THREADS=$THREADS lapsrn train --preset fast "$@" --seed "$seed" \
    --steps "$STEPS" --batch "$BATCH" --patch "$PATCH" --warmup 100 --val-every $(( STEPS / 4 )) \
    --train-dirs "$D/train/T91" "$D/train/BSDS200" --val-dirs "$D/test/Set5" "$D/test/Set14" \
    --out "$out" --quiet --resume > "$out.out" 2>&1 || { echo "failed: $name seed $seed (see $out.out)" >&2; return 1; }
}
export -f train_one
export STEPS BATCH PATCH THREADS D RUNS

# every configuration and seed, JOBS at a time (the costly MS-LapSRN runs first, so the pairs end together)
for seed in $SEEDS; do
  echo "$CONFIGS" | awk -F'|' '!seen[$1]++' | tac | while IFS='|' read -r name flags; do
    if [ -z "$ONLY" ] || [[ " $ONLY " == *" $name "* ]]; then echo "$name $seed $flags"; fi
  done
done | xargs -r -P "$JOBS" -L 1 bash -c 'train_one "$@"' _
if [ -n "$ONLY" ]; then  # a selection: its logs by configuration name, no study table
  for run in "$RUNS"/*-s*/; do cp "$run/log.csv" "$LOGS/$(basename "$run").csv"; done
  python scripts/ablations_report.py --longer "$LOGS"
  exit 0
fi

# the logs under the studies' names; the scales study also scored at x2 and x8
echo "$STUDIES" | while read -r study config; do
  for seed in $SEEDS; do cp "$RUNS/$config-s$seed/log.csv" "$LOGS/$study-s$seed.csv"; done
done
for seed in $SEEDS; do
  for pair in 4:mslapsrn-d5r2-ss 248:mslapsrn-d5r2-x248; do
    config=${pair#*:} json=$LOGS/scales-${pair%%:*}-s$seed.json
    [ -f "$json" ] || lapsrn evaluate -m "$RUNS/$config-s$seed/model.safetensors" --no-bicubic \
      -d "$D/test/Set5" -d "$D/test/Set14" --json "$json" --threads "$CPUS" > /dev/null
  done
done
python scripts/ablations_report.py "$LOGS"
