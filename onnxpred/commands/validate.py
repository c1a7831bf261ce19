"""``onnxpred validate``: check a rewritten model against its original (see :mod:`onnxpred.validation`).

Exit codes: 0 valid, 3 unreadable model or data, 4 unsupported model, 6 validation failed.
"""

from __future__ import annotations

from pathlib import Path

from ..validation import validate

NAME = "validate"
HELP = "check a rewritten model against its original: onnx.checker, window-1 equality, deviations at its windows"


def add_arguments(parser) -> None:
    parser.add_argument("original", type=Path, help="the original ONNX model")
    parser.add_argument("rewritten", type=Path, help="the model onnxpred rewrite wrote")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="validate on these images (labels.csv or wnid folders; default: random inputs)")
    parser.add_argument("--max-images", type=int, metavar="N", help="use at most N images of --data")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")


def run(args) -> int:
    print(validate(args.original, args.rewritten, data=args.data, max_images=args.max_images, seed=args.seed).format())
    return 0
