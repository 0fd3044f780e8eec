"""Score a fine-tuning run (scripts/finetune_cpu.sh) and its starting model on both kinds of data.

    python scripts/finetune_report.py --run build/finetune --start data/models/demo_weights.pth

Writes RUN/report.json: mAP@0.5 / mAP and AP@0.5 per class of the fine-tuned artefact (RUN/demo.pt)
and of the starting weights (exported to RUN/start.pt) on
* synthetic held-out cards (200 of seed 3, rendered into RUN/heldout_s3_200, never trained on);
* pic2card's labelled real cards (--real, validation only);
and the regression check of tests/test_train.py: mAP@0.5 on the first 24 held-out cards, with a
tolerance of three standard deviations of mAP@0.5 between the 8 disjoint 24-card sets.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from detr_deploy.data.cards import generate_dataset
from detr_deploy.evaluate import evaluate
from detr_deploy.paths import relative

HELDOUT_SEED, HELDOUT_CARDS, REGRESSION_CARDS = 3, 200, 24


def _scores(result: dict) -> dict:
    keep = ("map", "map50", "per_class", "per_class_map", "num_images", "num_boxes", "seconds_per_image")
    return {key: result[key] for key in keep if key in result}


def _subset(data: Path, first: int, count: int, out: Path) -> Path:
    """A COCO file of cards first..first+count-1 of a generated set (same images)."""
    document = json.loads((data / "annotations.json").read_text())
    ids = {image["id"] for image in document["images"][first : first + count]}
    part = dict(document)
    part["images"] = [image for image in document["images"] if image["id"] in ids]
    part["annotations"] = [a for a in document["annotations"] if a["image_id"] in ids]
    for image in part["images"]:
        image["file_name"] = str((data / image["file_name"]).resolve())
    out.write_text(json.dumps(part))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="build/finetune", help="the fine-tuning run's folder (holds demo.pt)")
    parser.add_argument("--start", default="data/models/demo_weights.pth", help="the weights it started from")
    parser.add_argument("--real", default="data/pic2card_real_val", help="labelled real cards (validation only)")
    parser.add_argument("--threshold", type=float, default=0.85, help="default threshold of the start artefact")
    args = parser.parse_args()
    run = Path(args.run)
    start_artefact = run / "start.pt"
    if not start_artefact.is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "detr_deploy.export",
                "--format",
                "torchscript",
                "--checkpoint",
                args.start,
                "--out",
                str(start_artefact),
                "--min-size",
                "384",
                "--max-size",
                "640",
                "--threshold",
                str(args.threshold),
            ],
            check=True,
        )
    heldout = run / f"heldout_s{HELDOUT_SEED}_{HELDOUT_CARDS}"
    if not (heldout / "annotations.json").is_file():
        generate_dataset(heldout, HELDOUT_CARDS, HELDOUT_SEED, formats=("coco",), progress=False)
    report: dict = {"heldout": {"seed": HELDOUT_SEED, "num_images": HELDOUT_CARDS}, "real_val": {"data": args.real}}
    for name, artefact in (("finetuned", run / "demo.pt"), ("start", start_artefact)):
        report["heldout"][name] = _scores(evaluate(artefact, heldout))
        report["real_val"][name] = _scores(evaluate(artefact, args.real))
        print(name, "held-out", report["heldout"][name]["map50"], "real", report["real_val"][name]["map50"])
    subsets = []
    for k in range(HELDOUT_CARDS // REGRESSION_CARDS):
        part = _subset(heldout, k * REGRESSION_CARDS, REGRESSION_CARDS, run / f"heldout_part{k}.json")
        subsets.append(evaluate(run / "demo.pt", part)["map50"])
    spread = float(np.std(subsets, ddof=1))
    report["regression_check"] = {
        "seed": HELDOUT_SEED,
        "num_cards": REGRESSION_CARDS,
        "map50": round(subsets[0], 6),
        "subset_map50": [round(v, 4) for v in subsets],
        "tolerance": round(3 * spread, 3),
        "tolerance_reason": f"3 x {spread:.3f}, the standard deviation of mAP@0.5 between the "
        f"{len(subsets)} disjoint {REGRESSION_CARDS}-card sets of the {HELDOUT_CARDS} held-out cards",
    }
    (run / "report.json").write_text(json.dumps(report, indent=1))
    print("wrote", relative(run / "report.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
