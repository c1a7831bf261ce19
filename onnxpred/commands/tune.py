"""``onnxpred tune``: per-layer prediction settings under an accuracy budget, never slower with objective latency.

Writes the tuned model (default ``<model stem>.tuned.onnx``), its settings as a window map
(``<output stem>.windows.json``, for ``onnxpred rewrite --window-map``) and a report folder
(``<output stem>.tune/``: report.json, report.md, report.html). Exit codes (:mod:`onnxpred.errors`): 0 done
(also when nothing pays or fits the budget: then no model is written), 2 bad arguments, 3 unreadable
model or data, 4 unsupported model, 5 output not writable, 6 validation failed or, with ``--strict``, the
goal not met on the confirmation images.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .. import op
from ..errors import ValidationError
from ..evaluation.render import percent
from ..model_io import check_output_path, model_files
from ..tuning.api import DEFAULT_TIME_BUDGET_S, output_paths, tune, write_outputs
from ..tuning.search import METRICS, OBJECTIVES
from ..tuning.space import DEFAULT_MARGINS
from ..tuning.split import DEFAULT_CONFIRMATION_FRACTION
from .report import comma_list, positive_int, window_list

NAME = "tune"
HELP = "choose each layer's prediction (or none) for the most savings within an accuracy budget"

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h)?\s*$")


def duration(text: str) -> float:
    """``90``/``90s`` seconds, ``20m`` minutes, ``1h`` an hour → seconds."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration such as 90s, 20m or 1h, got {text!r}")
    return float(match.group(1)) * {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]


def _patterns(text: str) -> list[str]:
    items = comma_list(text)
    unknown = [item for item in items if item not in op.PATTERNS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown pattern {unknown[0]!r} (known: {', '.join(op.PATTERNS)})")
    return items


def _threads(text: str) -> list[int]:
    return [positive_int(item) for item in comma_list(text)]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text}")
    return value


def _points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of points, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"the budget must be >= 0 points, got {text}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("model", type=Path, help="the original ONNX model (not rewritten)")
    parser.add_argument("--data", type=Path, help="dataset folder (labels.csv or ImageNet wnid folders; default: the "
                        "20 ImageNet sample images of the foolbox package)")
    parser.add_argument("--max-drop", type=_points, default=1.0, metavar="POINTS",
                        help="the largest drop of the metric against the original, in points (default 1.0)")
    parser.add_argument("--metric", choices=METRICS, default="top1",
                        help="top1 (needs labels) or agreement (top-1 agreement with the original; any images)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="latency",
                        help="macs: MACs of predicted outputs; executed: MACs the kernels skip; latency (default): "
                             "time in onnxruntime here, never slower than the original")
    parser.add_argument("--windows", type=window_list, default=window_list("1,2,3,4,5"),
                        help="candidate windows (default 1,2,3,4,5; 1 = the layer left as onnxruntime's Conv)")
    parser.add_argument("--patterns", type=_patterns,
                        help=f"candidate patterns (default all: {', '.join(op.PATTERNS)})")
    parser.add_argument("--margins", type=comma_list, default=list(DEFAULT_MARGINS),
                        help=f"candidate margins, absolute or in sd units (default {','.join(DEFAULT_MARGINS)})")
    parser.add_argument("--threads", type=_threads, help="onnxruntime thread counts to time and run at "
                        "(comma-separated; default 1 and all cores)")
    parser.add_argument("--time-budget", type=duration, default=DEFAULT_TIME_BUDGET_S, metavar="TIME",
                        help="stages cut their work short to finish in about this time (default 20m; 90s, 20m, 1h)")
    parser.add_argument("--min-savings", type=_fraction, metavar="FRACTION",
                        help="objectives macs/executed: a goal for the share of all Conv MACs saved")
    parser.add_argument("--strict", action="store_true",
                        help="exit with code 6 and write no model when the goal is not met on the confirmation images")
    parser.add_argument("--write-unchanged", action="store_true",
                        help="write the original as the output when nothing is chosen")
    parser.add_argument("--fp32", type=Path, metavar="MODEL", help="for a quantized model: the float model it was "
                        "quantized from; the confirmation also reports the top-1 drop against it")
    parser.add_argument("-o", "--output", type=Path, help="the tuned model (default: <model stem>.tuned.onnx)")
    parser.add_argument("--report", type=Path, metavar="DIR", help="report folder (default: <output stem>.tune)")
    parser.add_argument("--limit", type=positive_int, help="only the first N images of the data set")
    parser.add_argument("--confirm-fraction", type=_fraction, default=DEFAULT_CONFIRMATION_FRACTION,
                        help=f"share of the images kept for confirmation (default {DEFAULT_CONFIRMATION_FRACTION})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--order-channels", action=argparse.BooleanOptionalAction,
                        help="order each rewritten layer's output channels by their activity on the tuning images "
                             "(rewrite --order-channels): the same results, possibly faster kernels; default: on "
                             "for int8 models, off for float ones")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    import onnxruntime

    # The profiler's sessions save their optimised graphs, and onnxruntime warns about each one.
    onnxruntime.set_default_logger_severity(3)
    model_out, map_out, _ = output_paths(args.model, args.output)
    for path in (model_out, map_out):
        check_output_path(path, model_files(args.model))  # before the work, not after it
    result = tune(args.model, args.data, max_drop=args.max_drop, metric=args.metric, objective=args.objective,
                  windows=args.windows, patterns=args.patterns, margins=args.margins, threads=args.threads,
                  time_budget_s=args.time_budget, min_savings=args.min_savings,
                  confirmation_fraction=args.confirm_fraction, seed=args.seed, limit=args.limit,
                  progress=not args.quiet, fp32_model=args.fp32, order_channels=args.order_channels)
    strict_failure = args.strict and not result.goal_met
    written = write_outputs(result, args.model, args.output, data=args.data, write_model=not strict_failure,
                            write_unchanged=args.write_unchanged, report_dir=args.report)
    content = result.content
    if args.quiet:  # without progress output the messages were not shown as they came
        for message in result.messages:
            print(message)
    confirmation = content["confirmation"]
    if confirmation is not None:
        tuned = confirmation["tuned"]
        top1 = tuned["top1"]
        print(f"confirmation on {tuned['images']} unseen images: "
              + (f"top-1 {percent(top1['value'])} (original {percent(confirmation['original']['top1']['value'])}), "
                 if top1 else "")
              + f"agreement {percent(tuned['agreement']['value'])}, drop {confirmation['drop_points']:.2f} points"
              + (f" ({confirmation['top1_drop_vs_fp32_points']:.2f} against the float model)"
                 if confirmation["top1_drop_vs_fp32_points"] is not None else "") + "; "
              f"MACs predicted {percent(confirmation['predicted_share_all_conv'])}, skipped by the kernels "
              f"{percent(confirmation['skipped_share_all_conv'])} of all Conv MACs")
    for timing in content["end_to_end"]:
        print(f"  {timing['threads']} thread(s): tuned {timing['tuned_ms']:.2f} ms vs original "
              f"{timing['original_ms']:.2f} ms per image")
    if written.model is not None:
        print(f"wrote {written.model}" + (f" and its window map {written.window_map}" if written.window_map else
                                          " (the original, unchanged)")
              + ("" if result.goal_met or result.model is None else ": the best effort, the goal was not met"))
        if written.rewrite_command:
            print(f"  the same model again: {written.rewrite_command}")
    elif not strict_failure:
        print("no model written" + ("" if args.write_unchanged else " (--write-unchanged writes the original)"))
    print(f"report: {written.report / 'report.html'}, report.md and report.json")
    if strict_failure:
        raise ValidationError("goal not met on the confirmation images (--strict): "
                              + "; ".join(content["goal_not_met_because"]) + "; no model written")
    return 0
