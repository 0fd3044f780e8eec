"""Write notebooks/05_appendix_training_the_demo_model.ipynb (unexecuted); run it with nbconvert afterwards.

    .venv/bin/python scripts/notebooks/build_05_appendix_training_the_demo_model.py
    .venv/bin/python -m jupyter nbconvert --to notebook --execute --inplace notebooks/05_appendix_training_the_demo_model.ipynb
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "notebooks" / "05_appendix_training_the_demo_model.ipynb"

CELLS = []


def md(text):
    CELLS.append(new_markdown_cell(text.strip("\n")))


def code(text, ignore=False):
    # ignore=True: nbval does not compare the outputs (timings, numbers that depend on the machine)
    text = text.strip("\n")
    CELLS.append(new_code_cell("# NBVAL_IGNORE_OUTPUT\n" + text if ignore else text))


md(r"""
# Appendix 05 · How the demo model was trained

No pretrained DETR weights can be downloaded here, and boxes from random weights teach nothing, so the repository
trains a detector of its own: the small DETR of `detr_deploy.model.detr.detr_small` (ResNet-18 trunk to layer 3,
d_model 128, 3+3 transformer layers, 64 queries, 4.2 M parameters), from scratch, on synthetic card designs that
`detr_deploy.data.cards` renders with exact labels. The result is `data/models/demo.pt`, the model of chapters 01-03.

This appendix shows the three parts of that: the generated data with its labels, the training that produced the
shipped weights (its log, its learning rate, its validation curve, the ablation that chose the recipe), and a
short training run that executes here, on the CPU, in seconds. The full account, with every command, is
`data/models/README.md`; the numbers below are read from `data/models/demo_metrics.json` and
`data/models/demo_training_log.csv`.
""")

code(r"""
import json
import os
import shutil
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib_inline.backend_inline import set_matplotlib_formats

from detr_deploy import paths
from detr_deploy.train import loop as train_module
from detr_deploy.data.cards import CLASS_NAMES, render_card
from detr_deploy.model.checkpoint import load_model
from detr_deploy.data.datasets import card_seed
from detr_deploy.export.torchscript import make_pipeline
from detr_deploy.images import read_image
from detr_deploy.plotting import add_class_legend, class_color, plot_detections
""")

md(r"""
Setup: seeds, threads (`DETR_NUM_THREADS` overrides one per core), paths relative to the repository root, the
shipped metrics and training log.
""")

code(r"""
torch.manual_seed(0)
np.random.seed(0)
torch.set_num_threads(int(os.environ.get("DETR_NUM_THREADS", os.cpu_count() or 1)))
pd.set_option("display.precision", 4)
pd.set_option("display.max_colwidth", 90)
plt.rcParams.update({"figure.dpi": 110, "font.size": 9})
set_matplotlib_formats("jpeg", pil_kwargs={"quality": 85})  # figures full of card pixels: JPEG keeps the notebook small

OUT_DIR = paths.BUILD_DIR / "appendix05"  # generated files, not committed
OUT_DIR.mkdir(parents=True, exist_ok=True)
metrics = json.loads((paths.MODELS_DIR / "demo_metrics.json").read_text())
log = pd.read_csv(paths.MODELS_DIR / "demo_training_log.csv")
training = metrics["training"]
print(f"shipped: {training['steps']:,} steps, {training['images']:,} images, {training['train_seconds']:.0f} s of "
      f"training on {training['hardware'].split(',')[0]}; held-out mAP@0.5 {metrics['heldout']['map50']:.3f} "
      f"(target {metrics['target']['map50']}, reached: {metrics['target']['reached']})")
""")

md(r"""
## 1. The data: synthetic cards with exact labels

`render_card(seed)` draws one card the way the Adaptive Cards renderers show them (templates such as a weather
card, an expense report, a poll or a form, and free compositions of the same elements), in a light or a dark
theme with an accent colour, real fonts at many sizes, pictures, JPEG compression and resampling; it returns the
image and a box for every element of pic2card's six classes. The labelling policy (what gets a box, how tight) is
the module docstring of `detr_deploy/data/cards.py`.

The training stream of the shipped model is `render_card(card_seed(1, i))` for i < 20,000. Its first cards,
two light and two dark, picked by code by the brightness of the card's pixels:
""")

code(r"""
light, dark = [], []
index = 0
while len(light) < 2 or len(dark) < 2:
    image, labels = render_card(card_seed(1, index))
    pixels = np.asarray(image)
    group = dark if pixels.mean() < 110 else light
    if len(group) < 2:
        group.append((index, pixels, labels))
    index += 1
shown = light + dark  # top row light, bottom row dark

fig, axes = plt.subplots(2, 2, figsize=(12, 8.6))
for ax, (index, pixels, labels) in zip(axes.flat, shown):
    boxes = np.array([label["bbox"] for label in labels]).reshape(-1, 4)
    classes = np.array([label["category_id"] for label in labels])
    plot_detections(ax, pixels, boxes, classes, CLASS_NAMES, fontsize=6.5, linewidth=1.2,
                    title=f"training card {index}: {len(labels)} labels")
add_class_legend(fig, CLASS_NAMES, fontsize=9)
fig.tight_layout(rect=(0, 0.04, 1, 1))
plt.show()
print("indices:", [index for index, _, _ in shown], "| sizes:", [pixels.shape[:2] for _, pixels, _ in shown])
""", ignore=True)

md(r"""
The same generator, counted over the first 100 training cards: how many elements of each class, and how large
they are once a card is resized as the model sees it (shorter side 384 pixels, longer side at most 640).
Text blocks dominate; radio buttons and checkboxes are rarer and far smaller, which is where the model is weakest
(chapter 03, section 5).
""")

code(r"""
start = time.perf_counter()
rows = []
for index in range(100):
    image, labels = render_card(card_seed(1, index))
    scale = min(384 / min(image.size), 640 / max(image.size))
    for label in labels:
        x0, y0, x1, y1 = label["bbox"]
        rows.append({"class": CLASS_NAMES[label["category_id"]], "short side px": min(x1 - x0, y1 - y0) * scale})
elements = pd.DataFrame(rows)
seconds = time.perf_counter() - start
summary = elements.groupby("class")["short side px"].agg(["size", "median"]).reindex(CLASS_NAMES)
summary.columns = ["elements in 100 cards", "median short side at model input (px)"]
print(f"rendered 100 cards in {seconds:.1f} s")
summary.round(1)
""", ignore=True)

code(r"""
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
left.barh(CLASS_NAMES, summary.iloc[:, 0], color=[class_color(i) for i in range(len(CLASS_NAMES))])
left.invert_yaxis()
left.set(xlabel="elements in the first 100 training cards", title="class frequency")
bins = np.geomspace(2, 400, 40)
for i, name in enumerate(CLASS_NAMES):
    right.hist(elements[elements["class"] == name]["short side px"], bins=bins, histtype="step", linewidth=1.8,
               color=class_color(i), label=name)
right.set(xscale="log", xlabel="shorter side of the box at the model's input (px, log scale)", ylabel="elements",
          title="element size")
right.axvline(16, color="grey", linestyle=":", linewidth=1)
right.text(16.5, right.get_ylim()[1] * 0.9, "one feature cell (16 px)", fontsize=8, color="grey")
right.legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()
""")

md(r"""
## 2. The training recipe and the ablation

A vanilla DETR trained from scratch sits for a long time on the well-known plateau where every query predicts an
average box. Measured on this project's 2-core CPU and extrapolated, plain DETR training would need 5 to 50 hours to
reach the target of mAP@0.5 0.8. The recipe (details in `data/models/README.md`) therefore combines: 64 queries (cards
hold up to ~60 elements), input 384/640 so that checkboxes stay visible, batches of 32 drawn from pre-rendered
cards in GPU memory and grouped by aspect ratio, a vectorised matcher and loss, bf16 autocast, AdamW at 2e-4 for
trunk and transformer with warm-up and cosine decay, and training-only aids that leave the deployed graph
unchanged. Which aids? Five configurations trained for the same 100 s, at once, on one GPU:
""")

code(r"""
ablation = pd.DataFrame(metrics["ablation"]["runs"])
table = ablation[["config", "flags", "map50", "map", "steps", "images_per_s"]].rename(
    columns={"map50": "val mAP@0.5", "map": "val mAP", "images_per_s": "images/s"}).set_index("config")
print(metrics["ablation"]["budget"])
print("winner:", metrics["ablation"]["winner"])
table
""")

code(r"""
fig, ax = plt.subplots(figsize=(7, 3.2))
for run in metrics["ablation"]["runs"]:
    seconds, map50 = zip(*run["curve_train_s_map50"])
    ax.plot(seconds, map50, "o-", label=run["config"], linewidth=2 if run["config"] == metrics["ablation"]["winner"] else 1)
ax.set(xlabel="training seconds (each run had about a fifth of one H200)", ylabel="val mAP@0.5 (400 cards)",
       title="ablation: every configuration still on the DETR plateau after 100 s")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
""")

md(r"""
Read honestly, the ablation decides little: after 100 s on a fifth of a GPU (500-830 steps) all five are still on
the plateau (mAP@0.5 ≤ 0.03), and single-seed differences of 0.01 are noise. The clear effect is throughput:
denoising queries (DN-DETR) cost 35-40 % of the steps and did not repay it within the budget. The winner,
`full_no_dn` (two extra training-only query groups, Group-DETR style, no denoising), was also the fastest per step;
it was kept and trained on. A fair verdict on denoising and on the lower resolution needs runs of a few thousand
steps each, which the 15-minute device budget did not allow.

## 3. The training curves of the shipped model

`demo_training_log.csv` holds a row every 20 steps (losses, learning rate, gradient norm, throughput) and a row
for every validation (400 cards, seed 2), all against *training seconds*: wall-clock time on the GPU, with
validation time excluded. The run had three phases: the ablation (0-100 s, shared GPU), the first cosine cycle
(to 287 s) and, after a warm restart on the still-running machine, a second cycle (to 500 s).
""")

code(r"""
steps = log[log.loss.notna()]
validation = log[log.val_map50.notna()]
PHASES = [(100, "end of ablation"), (287, "warm restart")]
print(f"{len(steps)} loss rows, {len(validation)} validations; {int(log.step.max()):,} steps, "
      f"{int(log.images.max()):,} images in {log.elapsed_s.max():.0f} s of training")


def mark_phases(ax, labels=False):
    for seconds, name in PHASES:
        ax.axvline(seconds, color="grey", linestyle=":", linewidth=1)
        if labels:
            ax.text(seconds + 4, ax.get_ylim()[1] * 0.97, name, fontsize=7.5, color="grey", va="top", rotation=90)


fig, axes = plt.subplots(2, 2, figsize=(12, 7.2))
ax = axes[0, 0]
ax.plot(steps.elapsed_s, steps.loss, color="black", linewidth=1.2, label="total (all decoder layers + query groups)")
ax.plot(steps.elapsed_s, steps.loss_extra, color="tab:grey", linewidth=1, label="of which: extra query groups")
ax.set(yscale="log", ylabel="loss", title="training loss")
ax.legend(fontsize=8)
mark_phases(ax, labels=True)
ax = axes[0, 1]
for column, label, color in [("loss_class", "classification (cross-entropy)", "tab:red"),
                             ("loss_bbox", "L1 per box", "tab:blue"), ("loss_giou", "1 - GIoU per box", "tab:green")]:
    ax.plot(steps.elapsed_s, steps[column], label=label, color=color, linewidth=1.2)
ax.set(yscale="log", title="loss terms of the last decoder layer (unweighted)")
ax.legend(fontsize=8)
mark_phases(ax)
ax = axes[1, 0]
ax.plot(steps.elapsed_s, steps.lr.astype(float), color="tab:purple")
ax.set(ylabel="learning rate", xlabel="training seconds", title="learning rate: warm-up, constant, cosine; twice")
mark_phases(ax)
ax = axes[1, 1]
ax.plot(validation.elapsed_s, validation.val_map50, "o-", label="mAP@0.5", color="tab:orange")
ax.plot(validation.elapsed_s, validation.val_map, "s-", label="mAP@[.5:.95]", color="tab:brown")
ax.axhline(metrics["target"]["map50"], color="tab:red", linestyle="--", linewidth=1)
ax.text(5, metrics["target"]["map50"] + 0.01, f"target mAP@0.5 {metrics['target']['map50']}", fontsize=8, color="tab:red")
ax.set(ylim=(0, 0.9), xlabel="training seconds", ylabel="validation (400 cards, seed 2)", title="validation mAP")
ax.legend(fontsize=8, loc="center right")
mark_phases(ax)
for ax in axes.flat:
    ax.set_xlim(0, 510)
    ax.grid(alpha=0.3)
axes[0, 0].set_xlabel("training seconds")
axes[0, 1].set_xlabel("training seconds")
fig.tight_layout()
plt.show()
""")

code(r"""
curve = validation[["elapsed_s", "step", "images", "val_map50", "val_map"]].rename(
    columns={"elapsed_s": "training s", "val_map50": "val mAP@0.5", "val_map": "val mAP"}).set_index("training s")
curve
""")

md(r"""
What the curves say:

* **The plateau, and the break.** For the first ~100 s (830 steps) validation mAP stays near zero while the loss
  falls: the queries learn the average box first. Between 100 and 220 s (steps 830-3,300) the plateau breaks and
  mAP@0.5 climbs to 0.35.
* **The warm restart cost a minute.** Restarting the learning rate at 287 s threw the model back (0.50 → 0.41)
  before the second cycle carried it to 0.69. One uninterrupted schedule of the same length would have done
  better; the split came from the 10-minute limit per device command.
* **Still rising at the end.** mAP@0.5 rose by 0.19 in the last 213 s and the loss terms were still falling: the
  0.8 target was not reached because the budget ended, not because the model stopped learning.
""")

code(r"""
heldout = metrics["heldout"]
final = validation.iloc[-1]
print(f"final validation mAP@0.5 {final.val_map50:.3f} (400 cards, seed 2); held-out {heldout['map50']:.3f} "
      f"({heldout['num_images']} cards, seed 3, pycocotools); target {metrics['target']['map50']} reached: "
      f"{metrics['target']['reached']}")
last_cycle = validation[validation.elapsed_s >= 287]
print("validation mAP@0.5 still rising over the last two validations:", bool(np.diff(last_cycle.val_map50.values[-2:])[0] > 0))
late = steps[steps.elapsed_s > 400]
print("loss falling over the last 100 s (linear fit slope < 0):", bool(np.polyfit(late.elapsed_s, late.loss, 1)[0] < 0))
""")

md(r"""
The shipped model is reproduced by one command on a CUDA machine (about 12 minutes on an H200; budgets are
wall-clock seconds, so another GPU takes another number of steps): `bash scripts/gpu_train.sh`. On a CPU the same
recipe by steps is `python -m detr_deploy.train ... --steps 9200 --batch-size 32` (the full command is in
`demo_metrics.json`, below), and it takes days on two cores:
""")

code(r"""
commands = metrics["training"]["commands"]
print("reproduce:", commands["reproduce"])
print("CPU equivalent:", commands["cpu_equivalent"])
print("expected on a CPU:", commands["cpu_expected_time"])
""")

md(r"""
## 4. A short training run, here

The same module trains for a few steps on the CPU: the `detr_deploy.train.loop` command line called from Python
(`train_module.main(argv)` is exactly `python -m detr_deploy.train ARGV`). To finish in seconds it is tiny: cards
resized to 128/224 pixels, batches of 4, 16 queries, 30 steps, cards rendered on the fly in this process, and the
shipped recipe otherwise (two extra query groups, AdamW 2e-4, warm-up, cosine decay over the last 30 %). It
validates on 4 cards of seed 2 at the end and writes the same files as the real run.
""")

code(r"""
RUN_DIR = OUT_DIR / "tiny_run"
shutil.rmtree(RUN_DIR, ignore_errors=True)  # a fresh run, not a resume
argv = ["--out", str(RUN_DIR), "--device", "cpu", "--steps", "30", "--batch-size", "4",
        "--min-size", "128", "--max-size", "224", "--num-queries", "16", "--workers", "0", "--num-train", "120",
        "--val-synthetic", "4", "--log-every", "5", "--warmup", "5", "--seed", "1", "--checkpoint-every", "600"]
print("python -m detr_deploy.train", " ".join(argv).replace(str(paths.REPO_ROOT) + os.sep, ""))
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
start = time.perf_counter()
train_module.main(argv)  # the tqdm bar (stderr) shows loss, L1, GIoU, images/s and the ETA
print(f"trained in {time.perf_counter() - start:.1f} s")
""")

md(r"""
The loss, as logged every 5 steps (`log.csv`); the values depend on the machine's kernels, so they are shown but
not checked:
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
run_log = pd.read_csv(RUN_DIR / "log.csv")
run_log[run_log.loss.notna()][["step", "images", "lr", "loss", "loss_class", "loss_bbox", "loss_giou", "loss_extra",
                                "images_per_s"]].set_index("step")
""")

md(r"""
What is checked: the run finished its 30 steps, wrote its files, and its weights load as a plain DETR (the
training-only query groups are not in them) that runs in the deployment pipeline of chapter 01; the checkpoint
written for `--resume` loads the same way.
""")

code(r"""
run_summary = json.loads((RUN_DIR / "log.json").read_text())
print("status:", run_summary["status"], "| steps:", run_summary["step"], "| images:", run_summary["images"])
print("files:", sorted(path.name for path in RUN_DIR.iterdir()))
losses = run_log.loss.dropna()
print("loss logged every 5 steps, all finite:", len(losses) == 6 and bool(np.isfinite(losses).all()))

model = load_model(RUN_DIR / "model.pth").eval()
from_checkpoint = load_model(RUN_DIR / "checkpoint.pth").eval()
print("model.pth loads:", type(model).__name__, "with", model.config.num_queries, "queries,",
      model.config.num_classes, "classes", model.config.class_names)
print("no training-only parameters in it:", not any(key.startswith("aids") for key in model.state_dict()))
print("checkpoint.pth holds the same weights:",
      all(torch.equal(value, from_checkpoint.state_dict()[key]) for key, value in model.state_dict().items()))
""")

code(r"""
pipeline = make_pipeline(model, min_size=128, max_size=224, score_threshold=0.0).eval()
card = read_image(paths.SAMPLES_DIR / "images" / "card_00002.jpg")
with torch.inference_mode():
    boxes, scores, labels = pipeline(torch.from_numpy(card))
print("runs in the deployment pipeline:", tuple(boxes.shape), tuple(scores.shape), tuple(labels.shape),
      "| boxes inside the image:", bool((boxes[:, 2] <= card.shape[1]).all() and (boxes[:, 3] <= card.shape[0]).all()))
""")

md(r"""
Thirty steps of a tiny model teach it nothing useful (its validation mAP is zero); what this run shows is that
the pipeline from rendered cards to loadable, exportable weights works end to end on any machine. The shipped
model is the same code with 9,204 steps of 32 cards at 384/640 on a GPU.

## Summary

| | |
| --- | --- |
| data | synthetic Adaptive Cards, exact labels for six classes, 20,000 training cards (seed 1), validation seed 2, held-out seed 3 |
| model | plain DETR, ResNet-18 to layer 3, d_model 128, 3+3 layers, 64 queries, 4.2 M parameters |
| recipe | ablation winner `full_no_dn`: two extra training-only query groups, AdamW 2e-4, batch 32, 384/640, bf16 |
| budget | 500 s of training on one H200, 9,204 steps, 294,528 images |
| result | held-out mAP@0.5 0.706, mAP 0.385; target 0.8 **not reached**; curve still rising |
| what would reach it | by extrapolation, one uninterrupted 15-20 minute cosine schedule on an H200 (`data/models/README.md`) |
""")


def main():
    notebook = new_notebook(cells=CELLS)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    notebook.metadata["language_info"] = {"name": "python"}
    nbformat.write(notebook, TARGET)
    print(f"wrote {TARGET.relative_to(REPO)} ({len(CELLS)} cells)")


if __name__ == "__main__":
    main()
