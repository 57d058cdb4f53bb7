#!/usr/bin/env bash
# The bundled `gan` model: the papers' adversarial variant. The bundled default (MS-LapSRN D5R2 SS) is the
# generator, fine-tuned on the papers' clean bicubic data with the Charbonnier pyramid loss plus
# ADV x the non-saturating GAN loss of a DCGAN-style discriminator (lapsrn.models.Discriminator, which
# judges a patch's detail) on the last level's outputs; the discriminator learns at D_LR, 4x the generator.
# Ran on the 2-core CPU, one thread, beside other jobs (docs/MODEL_CARD.md, `gan`). Resumable like
# scripts/train_default.sh. Then bundle, score (scripts/evaluate_gan.sh) and bundle again with the metrics.
# Usage: bash scripts/train_gan.sh [DATA]   (DATA defaults to ../shared/datasets)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-../shared/datasets}
OUT=${OUT:-runs/gan}
lapsrn train --preset fast --train-dirs "$D/train/T91" "$D/train/BSDS200" --val-dirs "$D/test/Set5" "$D/test/Set14" \
  --init src/lapsrn/weights/mslapsrn_d5r2.safetensors --adversarial "${ADV:-3e-2}" --d-lr "${D_LR:-4e-4}" \
  --steps "${STEPS:-600}" --batch 16 --patch 64 --lr 1e-4 --warmup 20 --val-every 150 --out "$OUT" --quiet --resume
[ -n "${NO_BUNDLE:-}" ] && exit 0  # a trial of other settings: no bundling
command="bash scripts/train_gan.sh"
note="T91 + BSDS200, clean bicubic LR, adversarial loss; fine-tuned from the bundled default; no official weights used"
python scripts/bundle_model.py "$OUT/model.safetensors" --name gan --command "$command" --data "$note"
bash scripts/evaluate_gan.sh "${THREADS:-2}"
python scripts/bundle_model.py "$OUT/model.safetensors" --name gan --command "$command" --data "$note" \
  --metrics docs/results/gan/gan_x4.json
