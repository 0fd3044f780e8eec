#!/usr/bin/env bash
# Fine-tune the demo model on a CPU, then choose its threshold, export it and evaluate it.
# Restartable: run it again and training continues from OUT/checkpoint.pth (the seconds already
# trained count against SECONDS_BUDGET).
#
#   bash scripts/finetune_cpu.sh                       # stage 2 on a CPU: 5400 s from the GPU stage's weights
#   SECONDS_BUDGET=60 bash scripts/finetune_cpu.sh     # a quick dry run
#   START=data/models/demo_stage2_weights.pth VARIANT=wide CARDS=8000 LR=5e-5 LR_BACKBONE=2.5e-5 \
#       SECONDS_BUDGET=3600 EVAL_EVERY=600 OUT=build/wide_ft bash scripts/finetune_cpu.sh   # stage 3
#   ... VARIANT=full SECONDS_BUDGET=0 STEPS=<stage 3's steps> OUT=build/full_ft ...          # its control
#
# With CARDS > 0 (the default for every generator variant but full, detr_deploy.data.cards.variants),
# CARDS cards of VARIANT (seed 1, from index FIRST_CARD, so none is a card an earlier stage saw) are
# first pre-rendered into OUT/cards_VARIANT; with CARDS=0 (the default for full) they are rendered on the fly.
# REAL_VAL (pic2card's 18 labelled real cards) is validation only: it is scored every
# EVAL_EVERY seconds to watch the run, never trained on.
set -euo pipefail

PY=${PY:-.venv/bin/python}
OUT=${OUT:-build/finetune}
START=${START:-data/models/demo_gpu_stage_weights.pth}
SECONDS_BUDGET=${SECONDS_BUDGET:-5400}
EVAL_EVERY=${EVAL_EVERY:-900}
REAL_VAL=${REAL_VAL:-data/pic2card_real_val}
VARIANT=${VARIANT:-full}
if [ "$VARIANT" = full ]; then CARDS=${CARDS:-0}; else CARDS=${CARDS:-8000}; fi
FIRST_CARD=${FIRST_CARD:-100000}
STEPS=${STEPS:-0}  # > 0: stop after this many steps, the schedule following steps (SECONDS_BUDGET=0: no time limit)
LR=${LR:-1e-4}
LR_BACKBONE=${LR_BACKBONE:-5e-5}

DATA=synthetic
if [ "$CARDS" -gt 0 ]; then
  DATA="$OUT/cards_$VARIANT"
  [ -f "$DATA/meta.npz" ] || "$PY" -m detr_deploy.data.datasets "$DATA" --num "$CARDS" --seed 1 \
      --start "$FIRST_CARD" --variant "$VARIANT" --workers 2
fi

"$PY" -m detr_deploy.train --out "$OUT" --resume --checkpoint "$START" --device cpu --data "$DATA" \
    --time-budget "$SECONDS_BUDGET" --steps "$STEPS" --batch-size 8 --seed 1 --freeze-stages 1 \
    --lr "$LR" --lr-backbone "$LR_BACKBONE" --warmup 30 --decay-start 0.3 --final-lr-ratio 0.05 \
    --extra-groups 2 --val-data "$REAL_VAL" --eval-every "$EVAL_EVERY" --checkpoint-every 120 \
    --log-every 10 --no-progress --name "finetune_$VARIANT"

# the default threshold (chosen on validation cards), the artefact OUT/demo.pt, and both numbers for it and
# for the model it started from: synthetic held-out cards and real cards (OUT/report.json)
"$PY" scripts/finetune_report.py --run "$OUT" --start "$START" --real "$REAL_VAL"
