"""``onnxpred report``: accuracy, prediction outcomes, MAC savings and spatial correlation per window size,
sampling pattern and margin.

Also home of the arguments that ``analyze`` and ``crosscheck`` share with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import op
from ..errors import UserError
from ..evaluation import report
from ..evaluation.distributed import LOCAL, RayOptions
from ..evaluation.render import percent
from ..evaluation.report import DEFAULT_BATCH_SIZE, DEFAULT_MARGINS, DEFAULT_PATTERNS, default_output_folder

NAME = "report"
HELP = "evaluate a model at several window sizes and write report.json, report.md and report.html"


def window_list(text: str) -> list[int]:
    """``1,2,3`` → [1, 2, 3]."""
    try:
        windows = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not windows or min(windows) < 1:
        raise argparse.ArgumentTypeError(f"window sizes must be integers >= 1, got {text!r}")
    return windows


def add_common_arguments(parser, *, windows_default: str = "1,2,3,4,5") -> None:
    parser.add_argument("model", type=Path, help="the original ONNX model (not rewritten)")
    parser.add_argument("--data", type=Path, help="dataset folder: labels.csv or ImageNet wnid folders "
                        "(default: the 20 ImageNet sample images of the foolbox package)")
    parser.add_argument("-k", "--windows", type=window_list, default=window_list(windows_default),
                        help=f"comma-separated window sizes (default {windows_default})")
    parser.add_argument("--limit", type=positive_int, help="only the first N images of the data set")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"images per inference (default {DEFAULT_BATCH_SIZE}; a model with a fixed batch "
                             "size uses its own)")
    parser.add_argument("--threads", type=positive_int, help="onnxruntime intra-op threads (default: all cores; "
                        "with --ray, per worker, default 1)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_evaluation_arguments(parser) -> None:
    """Where the images are evaluated, and what happens to unreadable ones (report, analyze, ...)."""
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="leave unreadable images out of every number and list them (default: stop at the first)")
    parser.add_argument("--ray", nargs="?", const=LOCAL, metavar="ADDRESS",
                        help="spread the images over Ray workers (pip install 'onnxpred[ray]'): without ADDRESS a "
                             "local Ray instance, else that cluster's (auto, HOST:6379, ray://HOST:10001); the data "
                             "folder must be at the same path on every node")
    parser.add_argument("--workers", type=positive_int,
                        help="with --ray: workers (default: the cluster's CPUs / --threads)")
    parser.add_argument("--shard-size", type=positive_int,
                        help="with --ray: images per task, rounded up to whole batches (default: up to 8 batches)")


def evaluation_options(args) -> dict:
    """The keyword arguments of report/analyze that :func:`add_evaluation_arguments` parsed."""
    if args.ray is None and (args.workers or args.shard_size):
        raise UserError("--workers and --shard-size need --ray")
    ray = RayOptions(args.ray, args.workers, args.shard_size) if args.ray is not None else None
    return dict(skip_bad_images=args.skip_bad_images, ray=ray)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def comma_list(text: str) -> list[str]:
    """``a,b`` → ["a", "b"]."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def add_predictor_arguments(parser) -> None:
    """The sampling patterns and margins to evaluate besides the window sizes."""
    parser.add_argument("--patterns", type=comma_list, default=list(DEFAULT_PATTERNS), metavar="LIST",
                        help=f"comma-separated sampling patterns ({', '.join(op.PATTERNS)}; default diagonal)")
    parser.add_argument("--margins", type=comma_list, default=[str(m) for m in DEFAULT_MARGINS], metavar="LIST",
                        help="comma-separated margins: absolute (0.25) or in units of each layer's pre-activation "
                             "standard deviation (0.5sd); default 0")


def add_arguments(parser) -> None:
    add_common_arguments(parser)
    add_predictor_arguments(parser)
    add_evaluation_arguments(parser)
    parser.add_argument("--out", type=Path, help="output folder (default: <model stem>.report beside the model)")
    parser.add_argument("--no-spatial", action="store_true", help="leave out the spatial-correlation analysis")


def run(args) -> int:
    out = args.out or default_output_folder(args.model)
    content = report(args.model, args.data, args.windows, patterns=args.patterns, margins=args.margins,
                     out_dir=out, limit=args.limit, batch_size=args.batch_size,
                     spatial=not args.no_spatial, threads=args.threads, progress=not args.quiet,
                     **evaluation_options(args))
    original = content["original"]
    print(f"{content['images']} images; original model: top-1 {percent(original['top1'])}, "
          f"top-5 {percent(original['top5'])}")
    for result in content["results"]:
        print(f"  {result['label']}: top-1 {percent(result['top1'])}, top-5 {percent(result['top5'])}, "
              f"agreement {percent(result['agreement'])}, MACs saved {percent(result['mac_savings'])} of the "
              f"rewritten layers, {percent(result['mac_savings_all_conv'])} of all Conv layers")
    if content["skipped_images"]:
        print(f"skipped {len(content['skipped_images'])} unreadable images, listed in report.json")
    print(f"wrote {out / 'report.html'}, report.md and report.json")
    return 0
