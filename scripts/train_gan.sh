#!/usr/bin/env bash
# The bundled `gan` model: the papers' adversarial variant. The bundled default (MS-LapSRN D5R2 SS) is the
# generator, fine-tuned on the papers' clean bicubic data with the Charbonnier pyramid loss plus
# ADV x the non-saturating GAN loss of a DCGAN-style discriminator (lapsrn.models.Discriminator) on its
# x4/x2/x8 outputs; the discriminator learns at D_LR (faster than the generator, so that it leads it).
# Ran on the 2-core CPU (docs/MODEL_CARD.md gives the wall time). Resumable like scripts/train_default.sh.
# Usage: bash scripts/train_gan.sh [DATA]   (DATA defaults to ../shared/datasets)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-../shared/datasets}
lapsrn train --preset fast --train-dirs "$D/train/T91" "$D/train/BSDS200" --val-dirs "$D/test/Set5" "$D/test/Set14" \
  --init src/lapsrn/weights/mslapsrn_d5r2.safetensors --adversarial "${ADV:-5e-2}" --d-lr "${D_LR:-4e-4}" \
  --steps "${STEPS:-600}" --batch 16 --patch 64 --lr 1e-4 --warmup 20 --val-every 150 \
  --out "${OUT:-runs/gan}" --quiet --resume
