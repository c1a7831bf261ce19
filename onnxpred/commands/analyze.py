"""``onnxpred analyze``: how often k × k windows of the rewritable layers' activations are all zero."""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation import analyze
from ..evaluation.render import percent
from ..model_io import write_text
from .report import add_common_arguments, add_evaluation_arguments, evaluation_options

NAME = "analyze"
HELP = "measure the spatial correlation of zero activations (share of all-zero k x k windows) per layer"


def add_arguments(parser) -> None:
    add_common_arguments(parser)
    add_evaluation_arguments(parser)
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")


def run(args) -> int:
    spatial = analyze(args.model, args.data, args.windows, limit=args.limit, batch_size=args.batch_size,
                      threads=args.threads, progress=not args.quiet, **evaluation_options(args))
    windows = spatial["windows"]
    width = max(len(layer["name"]) for layer in spatial["layers"])
    print(f"{'layer':<{width}}  " + "  ".join(f"{f'k={window}':>7}" for window in windows))
    for layer in spatial["layers"] + [{"name": "mean over layers", "all_zero_fraction": spatial["mean"]}]:
        print(f"{layer['name']:<{width}}  " + "  ".join(f"{percent(f):>7}" for f in layer["all_zero_fraction"]))
    if spatial["skipped_images"]:
        print(f"skipped {len(spatial['skipped_images'])} unreadable images: "
              + ", ".join(image["file"] for image in spatial["skipped_images"]))
    if args.json:
        write_text(args.json, json.dumps(spatial, indent=2) + "\n")
    return 0
