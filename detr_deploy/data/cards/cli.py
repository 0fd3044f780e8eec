"""``python -m detr_deploy.data.cards``: write a labelled synthetic data set to a folder."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from detr_deploy.data.cards.compose import generate_dataset
from detr_deploy.data.classes import CLASS_NAMES


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.data.cards",
        description="Generate synthetic Adaptive Card images with box labels for pic2card's classes "
        f"({', '.join(CLASS_NAMES)}). Writes OUT_DIR/images/card_NNNNN.jpg, OUT_DIR/annotations.json "
        "(COCO, category_id = class index + 1) and a Pascal VOC XML beside each image.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created if missing)")
    parser.add_argument("--num-images", "-n", type=int, required=True, help="number of cards to render")
    parser.add_argument(
        "--seed", "-s", type=int, default=0, help="dataset seed; image i uses seed*1000003+i (default 0)"
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=("coco", "voc"),
        default=["coco", "voc"],
        help="label formats to write (default: coco voc)",
    )
    parser.add_argument(
        "--max-side", type=int, default=None, help="downscale images so the longer side is at most this"
    )
    parser.add_argument(
        "--min-width", type=int, default=280, help="minimum card width in px before rescaling (default 280)"
    )
    parser.add_argument(
        "--max-width", type=int, default=700, help="maximum card width in px before rescaling (default 700)"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    args = parser.parse_args(argv)
    if args.num_images < 0:
        parser.error("--num-images must be >= 0")
    out = generate_dataset(
        args.out_dir,
        args.num_images,
        args.seed,
        formats=tuple(args.formats),
        max_side=args.max_side,
        progress=not args.no_progress,
        min_width=args.min_width,
        max_width=args.max_width,
    )
    print(f"wrote {args.num_images} cards to {out}")
    return 0
