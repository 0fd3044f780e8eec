#!/usr/bin/env bash
# Fine-tune the GPU-trained demo model on a CPU to pic2card's labelling conventions and the
# generator's real-card fonts, then choose its threshold, export it and evaluate it.
# Restartable: run it again and training continues from OUT/checkpoint.pth (the seconds already
# trained count against SECONDS_BUDGET).
#
#   bash scripts/finetune_cpu.sh                       # the shipped model: 5400 s of training
#   SECONDS_BUDGET=60 bash scripts/finetune_cpu.sh     # a quick dry run
#
# REAL_VAL (pic2card's 18 labelled real cards) is validation only: it is scored every
# EVAL_EVERY seconds to watch the run, never trained on.
set -euo pipefail

PY=${PY:-.venv/bin/python}
OUT=${OUT:-build/finetune}
START=${START:-data/models/demo_gpu_stage_weights.pth}
SECONDS_BUDGET=${SECONDS_BUDGET:-5400}
EVAL_EVERY=${EVAL_EVERY:-900}
REAL_VAL=${REAL_VAL:-data/pic2card_real_val}

"$PY" -m detr_deploy.train --out "$OUT" --resume --checkpoint "$START" --device cpu \
    --time-budget "$SECONDS_BUDGET" --batch-size 8 --seed 1 --freeze-stages 1 \
    --lr 1e-4 --lr-backbone 5e-5 --warmup 30 --decay-start 0.3 --final-lr-ratio 0.05 \
    --extra-groups 2 --val-data "$REAL_VAL" --eval-every "$EVAL_EVERY" --checkpoint-every 120 \
    --log-every 10 --no-progress --name finetune_real_conventions

# the default threshold (chosen on validation cards), the artefact OUT/demo.pt, and both numbers for it and
# for the model it started from: synthetic held-out cards and real cards (OUT/report.json)
"$PY" scripts/finetune_report.py --run "$OUT" --start "$START" --real "$REAL_VAL"
