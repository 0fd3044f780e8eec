"""Choose the default threshold of a fine-tuned model, export it, and score it and its starting model.

    python scripts/finetune_report.py --run build/finetune --start data/models/demo_weights.pth

1. Threshold: the one (0.05 to 0.95 in steps of 0.05) with the best mean F1 at IoU 0.5 over
   60 synthetic validation cards (seed 2) and the real validation cards (--real; only the classes
   labelled there count, since images, buttons rows and ratings are not labelled on them).
2. Exports RUN/model.pth as RUN/demo.pt (TorchScript, resize 384/640, that default threshold).
3. Scores RUN/demo.pt and the starting weights (exported to RUN/start.pt) with pycocotools on
   200 synthetic held-out cards (seed 3, RUN/heldout_s3_200, never trained on) and on the real
   cards, and the regression check of tests/test_train.py: mAP@0.5 on the first 24 held-out cards,
   tolerance three standard deviations of mAP@0.5 between the 8 disjoint 24-card sets.
Writes RUN/report.json. With --ship it also installs the model as the repository's demo model:
RUN/demo.pt (+ .json) and RUN/model.pth as data/models/demo.pt and demo_weights.pth, the run's log as
data/models/demo_finetune_log.csv, and the record in data/models/demo_metrics.json. A run that continues
the shipped fine-tuning (``--stage finetune_wide``) is recorded under its own key beside the earlier
stage's record, with its log as data/models/demo_finetune_wide_log.csv.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from detr_deploy.data.cards import generate_dataset
from detr_deploy.data.datasets import read_labelled
from detr_deploy.evaluate import evaluate, precision_recall
from detr_deploy.export.torchscript import load_artefact
from detr_deploy.images import read_image
from detr_deploy.machine import cpu_model
from detr_deploy.model.checkpoint import load_model, read_state_dict, save_checkpoint
from detr_deploy.paths import MODELS_DIR, relative

VAL_SEED, VAL_CARDS = 2, 60
HELDOUT_SEED, HELDOUT_CARDS, REGRESSION_CARDS = 3, 200, 24
THRESHOLDS = [round(0.05 * k, 2) for k in range(1, 20)]


def export(checkpoint: str, out: Path, threshold: float) -> Path:
    subprocess.run(
        [sys.executable, "-m", "detr_deploy.export", "--format", "torchscript", "--checkpoint", checkpoint]
        + ["--out", str(out), "--min-size", "384", "--max-size", "640", "--threshold", str(threshold)],
        check=True,
    )
    return out


def f1_by_threshold(artefact: Path, data: Path, labelled_classes_only: bool) -> list:
    module, metadata = load_artefact(artefact)
    records = read_labelled(data, metadata["class_names"])
    present = set(np.concatenate([labels for _, _, labels in records]).tolist())
    detections = []
    with torch.inference_mode():
        for path, _, _ in records:
            boxes, scores, labels = (t.numpy() for t in module(torch.from_numpy(read_image(path)), 0.001))
            keep = np.isin(labels, list(present)) if labelled_classes_only else np.ones(len(labels), bool)
            detections.append((boxes[keep], scores[keep], labels[keep]))
    return precision_recall(detections, [(boxes, labels) for _, boxes, labels in records], THRESHOLDS)


def scores_of(result: dict) -> dict:
    keep = ("map", "map50", "per_class", "per_class_map", "num_images", "num_boxes")
    return {key: result[key] for key in keep}


def subset(data: Path, first: int, count: int, out: Path) -> Path:
    """A COCO file of cards first..first+count-1 of a generated set (the same images)."""
    document = json.loads((data / "annotations.json").read_text())
    part = dict(document, images=document["images"][first : first + count])
    ids = {image["id"] for image in part["images"]}
    part["annotations"] = [a for a in document["annotations"] if a["image_id"] in ids]
    part["images"] = [dict(image, file_name=str((data / image["file_name"]).resolve())) for image in part["images"]]
    out.write_text(json.dumps(part))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="build/finetune", help="the fine-tuning run's folder (holds model.pth)")
    parser.add_argument("--start", default="data/models/demo_weights.pth", help="the weights it started from")
    parser.add_argument("--start-threshold", type=float, default=0.85, help="the starting model's default threshold")
    parser.add_argument("--real", default="data/pic2card_real_val", help="labelled real cards (validation only)")
    parser.add_argument("--ship", action="store_true", help="install the result as data/models/demo.*")
    parser.add_argument(
        "--command", default="bash scripts/finetune_cpu.sh", help="the command that trained RUN (recorded with --ship)"
    )
    parser.add_argument(
        "--stage",
        default="finetune",
        help="key of the record in demo_metrics.json: 'finetune' (stage 2) or a further stage's name, e.g. "
        "'finetune_wide' (recorded beside stage 2, which keeps its record)",
    )
    parser.add_argument(
        "--control",
        help="with --ship and a further --stage: a run of the same recipe on the base generator's cards (its "
        "folder, already reported); its real-card curve and scores are recorded beside the stage's",
    )
    parser.add_argument("--control-command", default="", help="the command that trained the --control run")
    args = parser.parse_args()
    if args.control and args.stage == "finetune":
        parser.error("--control compares a further stage with the same recipe on the base generator: give --stage")
    if not args.stage.startswith("finetune"):
        parser.error(f"--stage must name a fine-tuning stage (finetune, finetune_wide, ...), got {args.stage!r}")
    run = Path(args.run)

    val = run / f"val_s{VAL_SEED}_{VAL_CARDS}"
    heldout = run / f"heldout_s{HELDOUT_SEED}_{HELDOUT_CARDS}"
    for folder, count, seed in ((val, VAL_CARDS, VAL_SEED), (heldout, HELDOUT_CARDS, HELDOUT_SEED)):
        if not (folder / "annotations.json").is_file():
            generate_dataset(folder, count, seed, formats=("coco",), progress=False)

    probe = export(str(run / "model.pth"), run / "probe.pt", 0.5)
    synthetic_f1 = f1_by_threshold(probe, val, labelled_classes_only=False)
    real_f1 = f1_by_threshold(probe, Path(args.real), labelled_classes_only=True)
    mean_f1 = [(s["f1"] + r["f1"]) / 2 for s, r in zip(synthetic_f1, real_f1, strict=True)]
    best = int(np.argmax(mean_f1))
    threshold = THRESHOLDS[best]
    print(f"default threshold {threshold}: F1 synthetic {synthetic_f1[best]['f1']:.3f}, real {real_f1[best]['f1']:.3f}")

    artefact = export(str(run / "model.pth"), run / "demo.pt", threshold)
    start = export(args.start, run / "start.pt", args.start_threshold)
    report: dict = {
        "threshold_choice": {
            "threshold": threshold,
            "rule": f"best mean F1 at IoU 0.5 over {VAL_CARDS} synthetic validation cards (seed {VAL_SEED}) and "
            "the real validation cards (their labelled classes only), thresholds 0.05-0.95 in steps of 0.05",
            "synthetic_val": synthetic_f1[best],
            "real_val": real_f1[best],
            "sweep": [
                {"threshold": t, "f1_synthetic": round(s["f1"], 4), "f1_real": round(r["f1"], 4)}
                for t, s, r in zip(THRESHOLDS, synthetic_f1, real_f1, strict=True)
            ],
        },
        "heldout": {"seed": HELDOUT_SEED, "num_images": HELDOUT_CARDS},
        "real_val": {"data": args.real},
    }
    for name, path in (("finetuned", artefact), ("start", start)):
        report["heldout"][name] = scores_of(evaluate(path, heldout))
        report["real_val"][name] = scores_of(evaluate(path, args.real))
        heldout_map50, real_map50 = report["heldout"][name]["map50"], report["real_val"][name]["map50"]
        print(f"{name}: held-out mAP@0.5 {heldout_map50:.3f}, real {real_map50:.3f}")
    parts = [
        evaluate(artefact, subset(heldout, k * REGRESSION_CARDS, REGRESSION_CARDS, run / f"heldout_part{k}.json"))[
            "map50"
        ]
        for k in range(HELDOUT_CARDS // REGRESSION_CARDS)
    ]
    spread = float(np.std(parts, ddof=1))
    report["regression_check"] = {
        "seed": HELDOUT_SEED,
        "num_cards": REGRESSION_CARDS,
        "map50": round(parts[0], 6),
        "subset_map50": [round(v, 4) for v in parts],
        "tolerance": round(3 * spread, 3),
        "tolerance_reason": f"3 x {spread:.3f}, the standard deviation of mAP@0.5 between the {len(parts)} "
        f"disjoint {REGRESSION_CARDS}-card sets of the {HELDOUT_CARDS} held-out cards",
    }
    (run / "report.json").write_text(json.dumps(report, indent=1))
    print("wrote", relative(run / "report.json"))
    if args.ship:
        ship(run, report, args)
    return 0


def hardware_of(log: dict) -> str:
    """Where a training run ran, from its log.json: machine, torch and arithmetic."""
    if log.get("device") == "cpu":
        arithmetic = "fp32"
        machine = f"{cpu_model()}, {log.get('hardware', '')}".rstrip(", ")
    else:
        arithmetic = "bf16 autocast" if "bfloat16" in str(log.get("amp")) else str(log.get("amp"))
        machine = log.get("hardware", log.get("device"))
    return f"{machine}, torch {log.get('torch')}, {arithmetic}"


def recipe_of(log: dict) -> str:
    """The fine-tuning recipe in words, from the run's recorded arguments."""
    a, data = log["args"], log.get("data", {})
    cards = data.get("train_cards")
    source = (
        f"{cards} pre-rendered synthetic cards of seed {a['seed']}"
        if "cache" in str(data.get("train", ""))
        else f"synthetic cards of seed {a['seed']} rendered on the fly"
    )
    frozen = {0: "nothing frozen", 1: "ResNet stem and layer1 frozen"}.get(
        a["freeze_stages"], f"ResNet stem and layers 1-{a['freeze_stages']} frozen"
    )
    return (
        f"start: {a['checkpoint']}; {frozen}; AdamW lr {a['lr']:g} (transformer, heads), {a['lr_backbone']:g} "
        f"(trunk), wd {a['weight_decay']:g}, warm-up {a['warmup']} steps, cosine from {a['decay_start']:.0%} of the "
        f"budget to {a['final_lr_ratio']:.0%}, clip {a['clip']:g}, batch {a['batch_size']} at "
        f"{a['min_size']}/{a['max_size']}, {source}, {a['extra_groups']} extra query groups; real cards scored "
        f"every {a['eval_every']:.0f} s, never trained on"
    )


def real_curve(log: dict) -> list:
    """[images seen, real mAP@0.5] at every validation of a run (its log.json)."""
    return [[entry["images"], entry["map50"]] for entry in log.get("val_history") or []]


TARGETS = {"map50": 0.8, "real_map50": 0.6, "real_min_class_ap50": 0.4}


def ship(run: Path, report: dict, args: argparse.Namespace) -> None:
    """Install RUN's model as the demo model and record it in data/models/demo_metrics.json."""
    log = json.loads((run / "log.json").read_text())
    for name in ("demo.pt", "demo.json"):
        shutil.copyfile(run / name, MODELS_DIR / name)
    _, extra = read_state_dict(run / "model.pth")
    save_checkpoint(load_model(run / "model.pth"), MODELS_DIR / "demo_weights.pth", **extra)
    log_csv = MODELS_DIR / f"demo_{args.stage}_log.csv"
    shutil.copyfile(run / "log.csv", log_csv)

    metrics_path = MODELS_DIR / "demo_metrics.json"
    metrics = json.loads(metrics_path.read_text())
    if args.stage != "finetune":  # stage 2's scores and its starting model move into its own record
        stage2 = metrics["finetune"]
        stage2.setdefault("scores", {key: metrics[key] for key in ("heldout", "real_val", "threshold_choice")})
        stage2.setdefault("start_model", metrics["start_model"])
    training = metrics["training"]
    if "heldout" not in training:  # the GPU stage's own score, on cards of the conventions it trained on
        training["heldout"] = dict(metrics["heldout"], note="cards labelled with glyph-only choice boxes")
    training["weights"] = "data/models/demo_gpu_stage_weights.pth"
    sidecar = json.loads((MODELS_DIR / "demo.json").read_text())
    heldout, real = report["heldout"]["finetuned"], report["real_val"]["finetuned"]
    metrics["heldout"] = dict(
        heldout,
        seed=HELDOUT_SEED,
        command=f"python -m detr_deploy.evaluate --data {relative(run)}/heldout_s{HELDOUT_SEED}_{HELDOUT_CARDS}",
        data_command=f"python -m detr_deploy.data.cards build/heldout_s3_200 --num-images {HELDOUT_CARDS} --seed 3",
    )
    metrics["real_val"] = dict(real, data=args.real, command=f"python -m detr_deploy.evaluate --data {args.real}")
    metrics["start_model"] = {
        "weights": args.start,
        "heldout": report["heldout"]["start"],
        "real_val": report["real_val"]["start"],
    }
    metrics["target"] = dict(
        TARGETS,
        reached=heldout["map50"] >= TARGETS["map50"],
        real_reached=real["map50"] >= TARGETS["real_map50"],
        real_classes_reached=min(real["per_class"].values()) > TARGETS["real_min_class_ap50"],
    )
    metrics["regression_check"] = dict(report["regression_check"], test=metrics["regression_check"]["test"])
    metrics["threshold_choice"] = report["threshold_choice"]
    model = metrics["model"]
    model.update(
        sha256=sidecar["sha256"],
        size_bytes=(MODELS_DIR / "demo.pt").stat().st_size,
        weights_size_bytes=(MODELS_DIR / "demo_weights.pth").stat().st_size,
        weights_note=f"GPU stage in bf16 autocast, fine-tuned ({hardware_of(log)}), stored as fp32"
        if args.stage == "finetune"
        else f"{model['weights_note'].removesuffix(', stored as fp32')}, then fine-tuned on the generator's "
        f"{args.stage.removeprefix('finetune_')} variant ({hardware_of(log)}), stored as fp32",
        pipeline={key: sidecar["preprocess"][key] for key in ("min_size", "max_size")}
        | {"score_threshold": sidecar["score_threshold"], "top_k": sidecar.get("top_k", 0)},
        score_threshold_choice=report["threshold_choice"]["rule"],
    )
    if args.stage != "finetune":  # stage 2 keeps its record; its weights are where this stage started
        metrics["finetune"]["weights"] = args.start
    metrics[args.stage] = {
        "command": args.command,
        "recipe": recipe_of(log)
        + (
            ""
            if args.stage == "finetune"
            else f"; the cards drawn by the generator's "
            f"{args.stage.removeprefix('finetune_')!r} variant (detr_deploy.data.cards.variants)"
        ),
        "steps": log["step"],
        "images": log["images"],
        "train_seconds": round(log["elapsed_s"] if "elapsed_s" in log else log["train_seconds"], 1),
        "hardware": hardware_of(log),
        "log_csv": relative(log_csv),
    }
    metrics[args.stage]["real_map50_curve"] = real_curve(log)
    if args.control:
        control = Path(args.control)
        control_report = json.loads((control / "report.json").read_text())
        metrics[args.stage]["control"] = {
            "run": "the same recipe on as many pre-rendered cards of the base generator (variant 'full')",
            "command": args.control_command,
            "real_map50_curve": real_curve(json.loads((control / "log.json").read_text())),
            "heldout": control_report["heldout"]["finetuned"],
            "real_val": control_report["real_val"]["finetuned"],
        }
    later = (
        ""
        if args.stage == "finetune"
        else (
            f", then for {metrics[args.stage]['train_seconds']:.0f} s ({metrics[args.stage]['hardware']}) on the "
            f"generator's {args.stage.removeprefix('finetune_')} variant"
        )
    )
    metrics["summary"] = (
        f"Small DETR (ResNet-18 to layer3, d_model 128, 3+3 layers, 64 queries), trained from scratch on one "
        f"NVIDIA H200 for {training['train_seconds']:.0f} s, then fine-tuned ({metrics['finetune']['hardware']}) for "
        f"{metrics['finetune']['train_seconds']:.0f} s to pic2card's labelling conventions{later}. mAP@0.5 "
        f"{heldout['map50']:.3f} on {HELDOUT_CARDS} synthetic held-out cards (seed 3), {real['map50']:.3f} on the "
        f"{real['num_images']} real pic2card validation cards; see data/models/README.md."
    )
    metrics_path.write_text(json.dumps(metrics, indent=1) + "\n")
    print("installed", relative(MODELS_DIR / "demo.pt"), "and wrote", relative(metrics_path))


if __name__ == "__main__":
    sys.exit(main())
