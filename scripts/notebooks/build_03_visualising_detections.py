"""Write notebooks/03_visualising_detections.ipynb (unexecuted); run it with nbconvert afterwards.

    .venv/bin/python scripts/notebooks/build_03_visualising_detections.py
    .venv/bin/python -m jupyter nbconvert --to notebook --execute --inplace notebooks/03_visualising_detections.ipynb
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "notebooks" / "03_visualising_detections.ipynb"

CELLS = []


def md(text):
    CELLS.append(new_markdown_cell(text.strip("\n")))


def code(text, ignore=False):
    # ignore=True: nbval does not compare the outputs (numbers that depend on the machine)
    text = text.strip("\n")
    CELLS.append(new_code_cell("# NBVAL_IGNORE_OUTPUT\n" + text if ignore else text))


md(r"""
# 03 · Visualising detections

Chapters 01 and 02 turned DETR into one file and ran it from Python and C++; their checks compare numbers.
This chapter looks at what those numbers *mean* for pic2card: which elements of a card design the shipped demo
model finds, how sure it is, where it looks, and where it fails.

The model is `data/models/demo.pt`: the small DETR (ResNet-18 trunk to layer 3, 3+3 transformer layers,
64 queries, 4.2 M parameters) trained from scratch on the repository's synthetic Adaptive Cards for 500 s on
one GPU. Its held-out mAP@0.5 is 0.706, short of the 0.8 the project aimed for
(`data/models/README.md` tells the whole story; appendix 05 shows the training). So this chapter shows a
useful detector with visible weaknesses, and it shows both.

| section | what |
| --- | --- |
| 1 | detections (box, class, score) on the sample cards |
| 2 | the Python and the C++ path on the same card, side by side, and a check that they agree |
| 3 | the score threshold: what it trades, measured against ground truth |
| 4 | where the object queries look: decoder cross-attention as heat maps |
| 5 | average precision per class on freshly generated held-out cards |
| 6 | failure cases, picked by code, and why they happen |
""")

code(r"""
import json
import os
import platform
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib_inline.backend_inline import set_matplotlib_formats

from detr_deploy import paths
from detr_deploy.native import cpp_build
from detr_deploy.data.cards import generate_dataset
from detr_deploy.model.checkpoint import load_model
from detr_deploy.data.datasets import read_labelled
from detr_deploy.evaluate import evaluate
from detr_deploy.export.torchscript import load_artefact, make_pipeline
from detr_deploy.images import read_image
from detr_deploy.plotting import (
    add_class_legend,
    add_comparison_legend,
    decoder_cross_attention,
    match_to_ground_truth,
    plot_attention,
    plot_detections,
    plot_ground_truth_comparison,
    plot_per_class_ap,
    precision_recall,
)
""")

md(r"""
Setup: seeds, threads (`DETR_NUM_THREADS` overrides the default of one per core, as for the service), paths
relative to the repository root, and the shipped artefact. Its metadata carries the class names and the
default score threshold (0.85), so nothing below hard-codes them.
""")

code(r"""
torch.manual_seed(0)
np.random.seed(0)
torch.set_num_threads(int(os.environ.get("DETR_NUM_THREADS", os.cpu_count() or 1)))
# TorchScript is deprecated in this torch release (chapter 01 counts the warnings); not repeated here.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.(save|load|freeze|optimize_for_inference)` is deprecated", category=FutureWarning
)
pd.set_option("display.precision", 3)
plt.rcParams.update({"figure.dpi": 110, "font.size": 9})
set_matplotlib_formats("jpeg", pil_kwargs={"quality": 85})  # figures full of card pixels: JPEG keeps the notebook small

OUT_DIR = paths.BUILD_DIR / "chapter03"  # generated files, not committed
OUT_DIR.mkdir(parents=True, exist_ok=True)
MODEL_PATH = paths.MODELS_DIR / "demo.pt"
module, metadata = load_artefact(MODEL_PATH)
NAMES = metadata["class_names"]
THRESHOLD = metadata["score_threshold"]
print(f"{paths.relative(MODEL_PATH)}: classes {NAMES}, default score threshold {THRESHOLD}")
print("resize:", {key: metadata["preprocess"][key] for key in ("min_size", "max_size")},
      "| queries:", metadata["model_config"]["num_queries"])


def detect(image, threshold=THRESHOLD):
    # The artefact's forward: uint8 [H, W, 3] -> boxes xyxy (input pixels), scores, labels.
    with torch.inference_mode():
        boxes, scores, labels = module(torch.from_numpy(image), threshold)
    return boxes.numpy(), scores.numpy(), labels.numpy()
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
print("python", platform.python_version(), "| torch", torch.__version__, "| threads", torch.get_num_threads())
""")

md(r"""
## 1. Detections on the sample cards

`data/samples/` holds eight synthetic cards with their labels (COCO `annotations.json`, and a Pascal VOC XML
beside each image, as labelImg writes them). Four of them, with everything the model reports above its default
threshold: the box, the class (its colour) and the score.
""")

code(r"""
samples = read_labelled(paths.SAMPLES_DIR, NAMES)  # [(image path, boxes xyxy, labels)], from annotations.json
sample_images = [read_image(path) for path, _, _ in samples]
sample_detections = [detect(image) for image in sample_images]

SHOWN = [0, 2, 4, 5]
fig, axes = plt.subplots(2, 2, figsize=(11, 9.5))
for ax, index in zip(axes.flat, SHOWN):
    boxes, scores, labels = sample_detections[index]
    plot_detections(ax, sample_images[index], boxes, labels, NAMES, scores=scores, fontsize=6.5, linewidth=1.5,
                    title=f"{samples[index][0].name}: {len(labels)} detections")
add_class_legend(fig, NAMES, fontsize=9)
fig.tight_layout(rect=(0, 0.03, 1, 1))
plt.show()
""")

md(r"""
How these detections compare with the labels, card by card: a detection is a *true positive* when it overlaps
a labelled box of its class with IoU of at least 0.5 (each labelled box counts once, highest score first, as in
COCO); the rest are false positives, and labelled boxes nobody claimed are missed.
""")

code(r"""
rows = []
for (path, gt_boxes, gt_labels), (boxes, scores, labels) in zip(samples, sample_detections):
    match = match_to_ground_truth(boxes, scores, labels, gt_boxes, gt_labels)
    rows.append({"card": path.name, "labelled": len(gt_labels), "detected": len(labels),
                 "true positives": int((match["det_gt"] >= 0).sum()),
                 "false positives": int((match["det_gt"] < 0).sum()),
                 "missed": int((~match["gt_matched"]).sum()),
                 "missed classes": ", ".join(sorted({NAMES[l] for l in gt_labels[~match["gt_matched"]]})) or "-"})
sample_table = pd.DataFrame(rows).set_index("card")
sample_table
""")

code(r"""
totals = sample_table[["labelled", "detected", "true positives", "false positives", "missed"]].sum()
print(f"all 8 cards: precision {totals['true positives'] / totals['detected']:.2f}, "
      f"recall {totals['true positives'] / totals['labelled']:.2f} at threshold {THRESHOLD} and IoU 0.5")
""")

md(r"""
Text blocks, images, button rows and star ratings mostly come out with tight boxes and scores near 1, and so do
most radio buttons and checkboxes on these cards. The false positives are the more visible problem: on
`card_00000` a wrapped paragraph gets a second box, and neighbouring short texts get boxes that do not line up
with the labels. Eight cards are few; sections 3, 5 and 6 measure the same on 40 fresh ones.

## 2. Python and C++ on the same card

The same artefact runs in Python through `torch.jit.load` (what `load_artefact` does) and in C++ through the
`detr_cpp` module of chapter 02 (`cpp_build.build_module()` compiles it only if a source changed). The C++
`Detector` freezes and optimises the graph by default, which changes the rounding in the last bits (chapter 02,
section 5), so the check is: the same detections in the same order with the same labels, boxes within
**0.01 pixel** and scores within **1e-5**.
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
detr_cpp = cpp_build.build_module()  # compiles only if a C++ source changed since the last build
detector = detr_cpp.Detector(MODEL_PATH)  # default: frozen + optimised graph, the artefact's threshold
print("backend:", detector.backend, "| optimised:", detector.optimized, "| classes:", detector.class_names)
""")

code(r"""
CARD = 2
image = sample_images[CARD]
from_python = dict(zip(("boxes", "scores", "labels"), detect(image)))
from_cpp = detector.detect(image)

fig, axes = plt.subplots(1, 2, figsize=(12, 4.9))
for ax, (name, found) in zip(axes, [("Python: torch.jit.load", from_python), ("C++: detr_cpp.Detector", from_cpp)]):
    plot_detections(ax, image, found["boxes"], found["labels"], NAMES, scores=found["scores"], fontsize=6.5,
                    title=f"{name} ({len(found['labels'])} detections)")
add_class_legend(fig, NAMES, fontsize=9)
fig.tight_layout(rect=(0, 0.05, 1, 1))
plt.show()
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
same_count = len(from_python["labels"]) == len(from_cpp["labels"])
box_diff = float(np.abs(from_python["boxes"] - from_cpp["boxes"]).max()) if same_count else float("inf")
score_diff = float(np.abs(from_python["scores"] - from_cpp["scores"]).max()) if same_count else float("inf")
print(f"{len(from_python['labels'])} vs {len(from_cpp['labels'])} detections; "
      f"largest difference: box {box_diff:.1e} px, score {score_diff:.1e}")
""")

code(r"""
agree = (same_count and np.array_equal(from_python["labels"], from_cpp["labels"])
         and box_diff <= 0.01 and score_diff <= 1e-5)
print("Python and C++ agree (same labels in the same order, boxes within 0.01 px, scores within 1e-5):", agree)
""")

md(r"""
On every sample card, not only this one:
""")

code(r"""
def paths_agree(image):
    python_boxes, python_scores, python_labels = detect(image)
    cpp = detector.detect(image)
    return (np.array_equal(python_labels, cpp["labels"])
            and float(np.abs(python_boxes - cpp["boxes"]).max(initial=0.0)) <= 0.01
            and float(np.abs(python_scores - cpp["scores"]).max(initial=0.0)) <= 1e-5)


print("agree on all 8 sample cards:", all(paths_agree(image) for image in sample_images))
""")

md(r"""
## 3. The score threshold

DETR gives every one of its 64 queries a class distribution; the pipeline keeps a query when its best real
class scores above the threshold. The artefact's default, 0.85, was chosen on 60 validation cards (seed 2): its F1
there is within 0.015 of the best measured, and it keeps recall above 0.83. Lower thresholds add detections, higher ones remove them, on this card:
""")

code(r"""
THRESHOLDS_SHOWN = [0.3, THRESHOLD, 0.97]
gt_boxes, gt_labels = samples[CARD][1], samples[CARD][2]
fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
for ax, threshold in zip(axes, THRESHOLDS_SHOWN):
    boxes, scores, labels = detect(image, threshold)
    match = match_to_ground_truth(boxes, scores, labels, gt_boxes, gt_labels)
    plot_ground_truth_comparison(ax, image, boxes, scores, labels, gt_boxes, gt_labels, match, NAMES, fontsize=5.5,
                                 title=f"threshold {threshold}: {len(labels)} detections, "
                                       f"{int((match['det_gt'] < 0).sum())} FP, {int((~match['gt_matched']).sum())} missed")
add_comparison_legend(fig, NAMES, fontsize=8.5)
fig.tight_layout(rect=(0, 0.07, 1, 1))
plt.show()
""")

md(r"""
One card proves little, so the same trade measured on **40 freshly generated held-out cards** (seed 3, the
seed the shipped metrics use for held-out data and that training never saw; `generate_dataset` writes them in
about a second). The model runs once per card at a threshold of 0.001 and every threshold is applied afterwards.
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
HELDOUT = generate_dataset(OUT_DIR / "heldout_s3_40", 40, 3, progress=False)  # = python -m detr_deploy.data.cards ... -n 40 --seed 3
heldout = read_labelled(HELDOUT, NAMES)
heldout_images = [read_image(path) for path, _, _ in heldout]
ground_truth = [(boxes, labels) for _, boxes, labels in heldout]
print(f"{paths.relative(HELDOUT)}: {len(heldout)} cards, {sum(len(l) for _, l in ground_truth)} labelled elements")
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
start = time.perf_counter()
all_detections = [detect(image, 0.001) for image in heldout_images]
print(f"{len(heldout_images)} cards in {time.perf_counter() - start:.1f} s")
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
sweep = pd.DataFrame(precision_recall(all_detections, ground_truth, [0.1, 0.3, 0.5, 0.7, 0.85, 0.9, 0.95, 0.97]))
sweep.set_index("threshold")
""")

code(r"""
fine = pd.DataFrame(precision_recall(all_detections, ground_truth, np.round(np.arange(0.05, 0.991, 0.01), 2)))
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
for column, style in [("precision", "-"), ("recall", "--"), ("f1", ":")]:
    left.plot(fine.threshold, fine[column], style, label=column, linewidth=2)
left.axvline(THRESHOLD, color="grey", linewidth=1)
left.text(THRESHOLD - 0.01, 0.02, f"default {THRESHOLD}", ha="right", fontsize=8, color="grey")
left.set(xlabel="score threshold", ylim=(0, 1), title="precision / recall at IoU 0.5, 40 held-out cards")
left.legend(loc="lower left")
left.grid(alpha=0.3)
right.plot(fine.recall, fine.precision, color="black")
for threshold in [0.3, 0.5, 0.7, THRESHOLD, 0.95]:
    row = fine.iloc[(fine.threshold - threshold).abs().argmin()]
    right.plot(row.recall, row.precision, "o", color="tab:red")
    right.annotate(f"{threshold}", (row.recall, row.precision), textcoords="offset points", xytext=(5, 4), fontsize=8)
right.set(xlabel="recall", ylabel="precision", title="the same as a precision-recall curve", xlim=(0.3, 0.9), ylim=(0.4, 1))
right.grid(alpha=0.3)
fig.tight_layout()
plt.show()
""")

code(r"""
best = fine.loc[fine.f1.idxmax()]
at_default = fine.iloc[(fine.threshold - THRESHOLD).abs().argmin()]
print("precision rises and recall falls as the threshold rises:",
      bool(fine.precision.iloc[-1] > fine.precision.iloc[0] and fine.recall.iloc[-1] < fine.recall.iloc[0]))
print("F1 at the default threshold within 0.05 of the best F1 on these cards:", bool(best.f1 - at_default.f1 <= 0.05))
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
print(f"best F1 {best.f1:.3f} at threshold {best.threshold:.2f}; at {THRESHOLD}: F1 {at_default.f1:.3f} "
      f"(precision {at_default.precision:.3f}, recall {at_default.recall:.3f})")
""")

md(r"""
Recall stays between 0.80 and 0.85 from a threshold of 0.05 up to the default, then falls quickly; precision
climbs steadily but stays far from 1. What are the false positives? At the default threshold, each one's best
IoU with a labelled element of its class:
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
cases = []  # per held-out card: the detections above the default threshold, matched to the labels
for index, ((boxes, scores, labels), (gt_boxes, gt_labels)) in enumerate(zip(all_detections, ground_truth)):
    keep = scores > THRESHOLD
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    match = match_to_ground_truth(boxes, scores, labels, gt_boxes, gt_labels)
    cases.append(dict(index=index, boxes=boxes, scores=scores, labels=labels, gt_boxes=gt_boxes,
                      gt_labels=gt_labels, match=match))
fp_iou = np.concatenate([c["match"]["det_iou"][c["match"]["det_gt"] < 0] for c in cases])
kinds = pd.cut(fp_iou, [0, 0.1, 0.5, 1.01], right=False,
               labels=["IoU < 0.1: nothing of its class there", "0.1-0.5: on an element, box off",
                       ">= 0.5: duplicate of a found element"])
print(pd.Series(kinds).value_counts(sort=False).to_string())
""")

code(r"""
print("most false positives lie on a real element of their class (IoU >= 0.1):", bool((fp_iou >= 0.1).mean() > 0.5))
""")

md(r"""
So most false positives are not hallucinations on empty background: they sit on a real element, as a second,
looser box on something already found, or a box that covers part of an element or spans two of them. That is
the signature of a DETR that has not trained long enough for its queries to become exclusive (section 6 shows
examples). For pic2card, which rebuilds a card from the detections, a missed element is usually worse than a
loose duplicate that a later stage can merge, which argues for a threshold at or below the default.

## 4. Where the queries look: decoder cross-attention

Each of DETR's object queries ends in a box and a class; in the decoder, its cross-attention reads the encoded
image features. As in the DETR authors' demo notebook, a forward hook on the last decoder layer's
`multihead_attn` captures its inputs, and the attention weights are recomputed from them, averaged over the
8 heads. The model itself is not changed: `decoder_cross_attention(model, pixels)` in
`detr_deploy/plotting.py`. This needs the eager model, so it is loaded from `data/models/demo_weights.pth`
(the weights the artefact was exported from) and wrapped in the same pipeline, whose detections must equal the
artefact's.
""")

code(r"""
eager = load_model(paths.MODELS_DIR / "demo_weights.pth").eval()
pipeline = make_pipeline(eager, min_size=metadata["preprocess"]["min_size"],
                         max_size=metadata["preprocess"]["max_size"], score_threshold=THRESHOLD).eval()
with torch.inference_mode():
    eager_boxes, eager_scores, eager_labels = pipeline(torch.from_numpy(image))
print("eager pipeline = artefact (labels equal, boxes within 0.01 px):",
      np.array_equal(eager_labels.numpy(), from_python["labels"])
      and bool(np.abs(eager_boxes.numpy() - from_python["boxes"]).max() <= 0.01))
""")

md(r"""
The card for this section is `card_00005`, a registration form with text, checkboxes and a button row.
""")

code(r"""
ATTENTION_CARD = 5
form = sample_images[ATTENTION_CARD]
pixels = pipeline.preprocess(torch.from_numpy(form))[None]
attention, outputs = decoder_cross_attention(eager, pixels)  # [64 queries, h/16, w/16]
query_scores, query_labels = outputs["pred_logits"][0].softmax(-1)[:, :-1].max(-1)
cx, cy, w, h = outputs["pred_boxes"][0].unbind(-1)
query_boxes = (torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
               * torch.tensor([form.shape[1], form.shape[0]] * 2)).numpy()  # xyxy in card pixels
print("card", tuple(form.shape[:2]), "-> model input", tuple(pixels.shape[-2:]), "-> attention maps",
      tuple(attention.shape), "| each map sums to 1:", bool(torch.allclose(attention.sum((1, 2)), torch.ones(64), atol=1e-4)))
""")

md(r"""
Six queries, chosen by code: the most confident query of each class the model finds on this card, then the most
confident of the rest. The outline is the query's box; the colour its attention (normalised to its maximum;
the more opaque and yellow, the more weight), on the 16-pixel grid of the layer-3 features.
""")

code(r"""
ranked = torch.argsort(query_scores, descending=True).tolist()
chosen = []
for query in ranked:  # the best query of each class first
    if int(query_labels[query]) not in [int(query_labels[q]) for q in chosen] and query_scores[query] > THRESHOLD:
        chosen.append(query)
chosen += [query for query in ranked if query not in chosen][: 6 - len(chosen)]

fig, axes = plt.subplots(2, 3, figsize=(12, 8.6))
for ax, query in zip(axes.flat, chosen):
    plot_attention(ax, form, attention[query].numpy(), box=query_boxes[query], label=int(query_labels[query]),
                   score=float(query_scores[query]), class_names=NAMES)
    ax.set_title(f"query {query}: " + ax.get_title(), fontsize=9, color=ax.title.get_color())
fig.suptitle("decoder cross-attention (last layer, mean of the 8 heads)", fontsize=10)
fig.tight_layout(rect=(0, 0, 1, 0.97))
plt.show()
print("queries:", chosen, "| classes:", [NAMES[int(query_labels[q])] for q in chosen])
""")

md(r"""
What the maps show: some queries look at their element itself (the button row, the title); many others look
mostly at the card's left edge *at the height of their element*, and at the top edge. A model this small and
this briefly trained finds an element partly by where it sits in the layout: its row, relative to the card's
borders. The DETR-R50 maps of the paper, which trace object extremities, come from a far larger model trained
for days. The maps also have the 16-pixel resolution of the features: a 10-pixel checkbox covers less than one
cell, one reason why the small classes are the hard ones.

Measured over every confident query on this card: how much of its attention falls inside its box, and how much
in the horizontal band of rows its box spans (widened by half a feature cell), each against the share of the
image that region covers:
""")

code(r"""
def attention_share(weights, region, height, width):
    # Share of a [h', w'] map whose cell centres fall inside region (x0, y0, x1, y1, pixels).
    rows, cols = weights.shape
    ys = (np.arange(rows) + 0.5) * height / rows
    xs = (np.arange(cols) + 0.5) * width / cols
    inside = ((ys[:, None] >= region[1]) & (ys[:, None] <= region[3])
              & (xs[None] >= region[0]) & (xs[None] <= region[2]))
    return float(weights[inside].sum()), float(inside.mean())


height, width = form.shape[:2]
half_cell = 8 * height / pixels.shape[-2]  # half of a 16-pixel feature cell, in card pixels
rows = []
for query in [q for q in ranked if query_scores[q] > THRESHOLD]:
    x0, y0, x1, y1 = query_boxes[query]
    in_box, box_area = attention_share(attention[query].numpy(), (x0, y0, x1, y1), height, width)
    in_band, band_area = attention_share(attention[query].numpy(), (0, y0 - half_cell, width, y1 + half_cell),
                                         height, width)
    rows.append({"query": query, "class": NAMES[int(query_labels[query])], "attention in box": in_box,
                 "box share of image": box_area, "attention in its rows": in_band, "rows share of image": band_area})
shares = pd.DataFrame(rows).set_index("query")
print(f"{len(shares)} confident queries; medians:")
print(shares.drop(columns="class").median().round(3).to_string())
print("attention in its own rows above their share of the image, for most queries:",
      bool((shares["attention in its rows"] > shares["rows share of image"]).mean() > 0.5))
""")

md(r"""
## 5. Average precision per class

`evaluate()` is the Python side of `python -m detr_deploy.evaluate`: COCO's metric through pycocotools, at a
score threshold of 0.001 (AP integrates over every threshold). Here on the 40 held-out cards of section 3
(about 10 seconds on 2 cores); `data/models/demo_metrics.json` holds the same on 200 cards of the same seed
(its first 40 are these 40).
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
start = time.perf_counter()
result = evaluate(MODEL_PATH, HELDOUT)  # = python -m detr_deploy.evaluate --data build/chapter03/heldout_s3_40
print(f"evaluated {result['num_images']} cards ({result['num_boxes']} boxes) in {time.perf_counter() - start:.0f} s: "
      f"mAP {result['map']:.3f}, mAP@0.5 {result['map50']:.3f}")
""")

code(r"""
recorded = json.loads((paths.MODELS_DIR / "demo_metrics.json").read_text())["heldout"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.3), sharey=True)
plot_per_class_ap(axes[0], result["per_class"], NAMES,
                  title=f"AP@0.5, {result['num_images']} held-out cards (here): mAP@0.5 {result['map50']:.2f}")
plot_per_class_ap(axes[1], recorded["per_class"], NAMES,
                  title=f"AP@0.5, {recorded['num_images']} held-out cards (recorded): mAP@0.5 {recorded['map50']:.2f}")
for ax in axes:
    ax.axvline(0.8, color="grey", linestyle=":", linewidth=1)
fig.tight_layout()
plt.show()
""")

code(r"""
tolerance = json.loads((paths.MODELS_DIR / "demo_metrics.json").read_text())["regression_check"]["tolerance"]
print(f"mAP@0.5 within the regression tolerance ({tolerance}) of the recorded {recorded['map50']:.3f}:",
      abs(result["map50"] - recorded["map50"]) <= tolerance)
weakest = sorted(result["per_class"], key=result["per_class"].get)[:2]
print("the two weakest classes here:", sorted(weakest))
""")

md(r"""
The pattern is the one recorded on 200 cards: button rows, images and star ratings are found reliably, text
blocks mostly, and the two small classes, checkbox and radio button, hold the mean down. Forty cards hold only a
few dozen of each small element, so their AP is noisy (the mean AP@0.5 alone varies with a standard deviation of
0.06 between 24-card sets, `data/models/README.md`); the 200-card numbers are the ones to quote.

## 6. Failure cases

Three kinds of failure, each the worst of its kind among the 40 held-out cards at the default threshold, picked
by code from the matches of section 3:

* **missed**: the card with the most missed labelled elements (zoomed on the first of them);
* **false positive**: the most confident detection, on another card, with nothing of its class under it
  (IoU < 0.1);
* **mislocalised**: the most confident detection, on a third card, that overlaps a labelled element of its class
  with an IoU between 0.1 and 0.5.

Each is shown on the whole card (outlines only; the dotted frame marks the zoom) and zoomed in, with tags.
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
missed_card = max(cases, key=lambda c: (int((~c["match"]["gt_matched"]).sum()), -c["index"]))["index"]
false_positives = [(c["scores"][d], c["index"], d) for c in cases for d in np.where(c["match"]["det_gt"] < 0)[0]
                   if c["match"]["det_iou"][d] < 0.1 and c["index"] != missed_card]
fp_score, fp_card, fp_det = max(false_positives)
mislocalised = [(c["scores"][d], c["index"], d) for c in cases for d in np.where(c["match"]["det_gt"] < 0)[0]
                if 0.1 <= c["match"]["det_iou"][d] < 0.5 and c["index"] not in (missed_card, fp_card)]
ml_score, ml_card, ml_det = max(mislocalised)
first_missed = int(np.where(~cases[missed_card]["match"]["gt_matched"])[0][0])
print(f"missed: card {missed_card}, {int((~cases[missed_card]['match']['gt_matched']).sum())} of "
      f"{len(cases[missed_card]['gt_labels'])} labelled elements missed")
print(f"false positive: card {fp_card}, {NAMES[cases[fp_card]['labels'][fp_det]]} scored {fp_score:.3f}")
print(f"mislocalised: card {ml_card}, {NAMES[cases[ml_card]['labels'][ml_det]]} scored {ml_score:.3f}, "
      f"IoU {cases[ml_card]['match']['det_iou'][ml_det]:.2f}")
""")

code(r"""
from matplotlib.patches import Rectangle


def show_failure(card, box, kind, margin=45):
    case, card_image = cases[card], heldout_images[card]
    height, width = card_image.shape[:2]
    x0, y0, x1, y1 = box
    crop = (max(0, x0 - margin), max(0, y0 - margin), min(width, x1 + margin), min(height, y1 + margin))
    arrays = (card_image, case["boxes"], case["scores"], case["labels"], case["gt_boxes"], case["gt_labels"],
              case["match"], NAMES)
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(12, 4.8))
    plot_ground_truth_comparison(whole, *arrays, tags=False, title=f"held-out card {card}")
    whole.add_patch(Rectangle(crop[:2], crop[2] - crop[0], crop[3] - crop[1], fill=False, edgecolor="black",
                              linestyle=":", linewidth=1.5))
    plot_ground_truth_comparison(zoom, *arrays, crop=crop, fontsize=7.5, title=f"{kind}, zoomed")
    add_comparison_legend(fig, NAMES, ncol=4, fontsize=8.5)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    plt.show()


show_failure(missed_card, cases[missed_card]["gt_boxes"][first_missed], "missed")
""")

code(r"""
show_failure(fp_card, cases[fp_card]["boxes"][fp_det], "false positive")
""")

code(r"""
show_failure(ml_card, cases[ml_card]["boxes"][ml_det], "mislocalised")
""")

md(r"""
Which elements are missed, over all 40 cards: recall at IoU 0.5 and the default threshold by class and by the
element's shorter side *at the model's input resolution* (the pipeline scales each card so that its shorter
side is 384 pixels, longer side at most 640), and how many of the missed boxes the model did find, but under
another class (IoU ≥ 0.5 with a detection of another class).
""")

code(r"""
records = []
for case in cases:
    height, width = heldout_images[case["index"]].shape[:2]
    scale = min(384 / min(height, width), 640 / max(height, width))
    sides = np.minimum(case["gt_boxes"][:, 2] - case["gt_boxes"][:, 0], case["gt_boxes"][:, 3] - case["gt_boxes"][:, 1])
    for label, side, found, any_iou in zip(case["gt_labels"], sides * scale, case["match"]["gt_matched"],
                                           case["match"]["gt_best_any_iou"]):
        records.append({"class": NAMES[label], "side": side, "found": found,
                        "other class": (not found) and any_iou >= 0.5})
elements = pd.DataFrame(records)
elements["short side at input"] = pd.cut(elements.side, [0, 12, 20, 40, 10_000],
                                         labels=["< 12 px", "12-20 px", "20-40 px", "> 40 px"], right=False)
by_class = elements.groupby("class").agg(labelled=("found", "size"), recall=("found", "mean"),
                                         missed=("found", lambda f: int((~f).sum())),
                                         **{"found as another class": ("other class", "sum")},
                                         **{"median side px": ("side", "median")})
by_size = elements.groupby("short side at input", observed=True).agg(labelled=("found", "size"), recall=("found", "mean"))
display(by_class.loc[[name for name in NAMES if name in by_class.index]].round(2))
display(by_size.round(2))
""", ignore=True)

code(r"""
small = elements[elements.side < 12].found.mean()
large = elements[elements.side >= 20].found.mean()
print("recall of elements under 12 px lower than of elements of 20 px and more:", bool(small < large))
""")

md(r"""
Why, honestly:

* **Small elements.** Checkboxes and radio buttons are 8-15 pixels at the model's input, less than one cell of
  the 16-pixel feature grid the transformer works on (section 4). Their recall is below that of the text blocks
  and the large classes, and recall falls with element size (the tables above). Remedies the training notes
  list: a larger input (448/768), or stride-8 features for the encoder; both cost inference time.
* **Dense columns of small controls.** In the first two cases the model finds the right column and about the
  right number of radio buttons and checkboxes, but its boxes sit up to half a row off their labels (IoU
  mostly 0.1-0.45), so each counts as one false positive *and* one miss. Rows 15-20 pixels apart are about one
  feature cell apart; telling them apart needs finer features or more training.
* **Under-training.** The model trained for 500 s (9,200 steps) and its validation curve was still rising
  (appendix 05). An under-trained DETR's queries are not yet exclusive: two queries land on one element, one
  with a loose box; that is the mislocalised case, and most false positives look like it.
* **Ambiguous units.** The labels follow a policy (one box per TextBlock, however many lines it wraps to; one
  box per row of buttons; a rating's stars without its text). Where two text blocks sit close together, or a
  paragraph's lines are spaced like separate blocks, the model may split or merge them differently from the
  label: a false positive and a miss for what a person would call a fair reading.
* **Synthetic only.** Everything here is synthetic, from the same generator as the training data. Real card
  screenshots have fonts, icons and layouts the generator does not make; expect lower numbers there.

## Summary

| question | answer here |
| --- | --- |
| what the demo model finds | large elements reliably (AP@0.5 0.84-0.94 on 200 held-out cards), text blocks mostly (0.75), small checkboxes and radio buttons poorly (0.38-0.45): mostly found, but with loose boxes and many false positives |
| Python vs C++ | same detections on every sample card; boxes within 0.01 px |
| score threshold | precision and recall trade smoothly; the default 0.85 sits near the best F1 |
| attention | a confident query looks at its element's rows of the layout, often at the card's edge, sometimes at the element itself; 16-pixel resolution |
| failures | most false positives are loose, shifted or duplicate boxes on real elements; misses are mostly small elements: what more training and resolution address |
""")


def main():
    notebook = new_notebook(cells=CELLS)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    notebook.metadata["language_info"] = {"name": "python"}
    nbformat.write(notebook, TARGET)
    print(f"wrote {TARGET.relative_to(REPO)} ({len(CELLS)} cells)")


if __name__ == "__main__":
    main()
