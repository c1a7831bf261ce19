"""``onnxpred rewrite``: replace Conv→Relu/Clip layers by PredictiveConv (the Relu-like Convs of a quantized
model by PredictiveQLinearConv), then validate the result.

The output defaults to ``<input stem>.pred.onnx`` beside the input. It is written atomically, only
after validation passed; models over 2 GB, and models whose input came with external data, keep
their tensors in ``<output>.data``. Exit codes (:mod:`onnxpred.errors`): 0 done, 2 bad arguments,
3 unreadable model or data, 4 unsupported model, 5 output not writable or the input itself,
6 validation failed.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import op
from ..errors import InputError, UserError
from ..evaluation.scales import layer_statistics, preactivation_activity, preactivation_sd
from ..model_io import check_output_path, model_files, needs_external_data, staged_output, write_model
from ..rewriter.api import rewrite_with_summary
from ..rewriter.selection import Predictor, margins_in_sd
from ..validation import validate
from .report import comma_list

NAME = "rewrite"
HELP = ("replace Conv->Relu/Clip layers by PredictiveConv (quantized ones by PredictiveQLinearConv), list them and "
        "validate the rewritten model")


def add_arguments(parser) -> None:
    parser.add_argument("model", type=Path, help="the ONNX model to rewrite")
    parser.add_argument("-k", "--window", type=int, default=3, help="prediction window k of every layer (default 3)")
    parser.add_argument("--pattern", default=op.ATTRIBUTES["pattern"].default, metavar="NAME",
                        help=f"sampled outputs of each window: {', '.join(op.PATTERNS)} (default diagonal)")
    parser.add_argument("--margin", default="0", metavar="M",
                        help="predict a window only where its samples' pre-activation is <= -M: absolute (0.25) or "
                             "in units of each layer's pre-activation standard deviation (0.5sd, measured on the "
                             "--data images or the built-in samples); default 0")
    parser.add_argument("-o", "--output", type=Path,
                        help="the rewritten model (default: <model stem>.pred.onnx beside the model)")
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument("--layers", type=comma_list, action="extend", metavar="NAMES",
                           help="rewrite only these layers (comma-separated Conv node names; repeatable)")
    selection.add_argument("--exclude", type=comma_list, action="extend", metavar="NAMES",
                           help="leave these layers alone (comma-separated Conv node names; repeatable)")
    parser.add_argument("--window-map", type=Path, metavar="FILE",
                        help='JSON file {"layer": k or {"window": k, "pattern": P, "margin": M}, ...}: settings of '
                             'single layers, overriding -k, --pattern and --margin (missing keys keep them)')
    parser.add_argument("--no-validate", action="store_true", help="skip the validation against the original")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="validate on these images (labels.csv or wnid folders; default: random inputs)")
    parser.add_argument("--order-channels", action="store_true",
                        help="order each layer's output channels by their activity on the --data images (default: "
                             "the built-in samples): the model computes the same, and windows skip whole blocks of "
                             "rarely active channels")
    parser.add_argument("--audit", action="store_true",
                        help="set audit=1: the op also counts prediction hits and misses")
    parser.add_argument("--write-unchanged", action="store_true",
                        help="write the output even when no layer is eligible (a copy of the model)")
    parser.add_argument("--counters", action="store_true",
                        help="expose each layer's counters as the graph output <layer>.counters")


def default_output(model: Path) -> Path:
    return model.with_name(f"{model.stem}.pred.onnx")


def read_window_map(path: Path) -> dict:
    try:
        window_map = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"cannot read the window map {path}: {error.strerror or error}") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"the window map {path} is not JSON: {error}") from error
    if not isinstance(window_map, dict):
        raise UserError(f'the window map {path} must be a JSON object {{"layer": k or {{"window": k, ...}}, ...}}')
    return window_map


def run(args) -> int:
    output = args.output or default_output(args.model)
    inputs = model_files(args.model)
    check_output_path(output, inputs)  # before the work, not after it
    window_map = read_window_map(args.window_map) if args.window_map else None
    predictor = Predictor.create(args.window, args.pattern, args.margin)
    scales = layer_statistics(preactivation_sd, args.model, args.data) if margins_in_sd(predictor, window_map) else None
    activity = layer_statistics(preactivation_activity, args.model, args.data) if args.order_channels else None
    model, summary = rewrite_with_summary(
        args.model,
        args.window,
        pattern=args.pattern,
        margin=args.margin,
        layers=args.layers,
        exclude=args.exclude,
        window_map=window_map,
        scales=scales,
        audit=args.audit,
        expose_counters=args.counters,
        channels_last=True,
        channel_activity=activity,
    )
    print(summary.format_table())
    if summary.layers_rewritten == 0 and not args.write_unchanged:
        print(f"no eligible Conv->activation layer in {args.model}: nothing written "
              "(--write-unchanged writes the model anyway)")
        return 0
    external_data = needs_external_data(model, inputs)
    with staged_output(output) as staged:
        write_model(model, staged, external_data=external_data)
        del model  # validation loads what it needs; a large model should not stay in memory twice
        if not args.no_validate:
            print(validate(args.model, staged, data=args.data).format())
    print(f"wrote {output}" + (f" and {output.name}.data" if external_data else ""))
    return 0
