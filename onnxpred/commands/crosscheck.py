"""``onnxpred crosscheck``: the compiled op against a NumPy simulation of the whole rewritten model."""

from __future__ import annotations

from ..errors import ValidationError
from ..evaluation import crosscheck
from ..evaluation.simulate import END_TO_END_TOLERANCE, QUANTIZED_END_TO_END_TOLERANCE, SAME_INPUTS_TOLERANCE
from ..rewriter.selection import predictor_grid
from .report import add_common_arguments, add_predictor_arguments

NAME = "crosscheck"
HELP = ("run images through the rewritten model with the compiled op and through a NumPy simulation of it; "
        "compare counters and top-1 classes")


def add_arguments(parser) -> None:
    add_common_arguments(parser, windows_default="3")
    add_predictor_arguments(parser)
    parser.add_argument("--tolerance", type=float,
                        help="allowed counter difference per layer between the two whole-model runs, as a share "
                             f"of the layer's outputs (default {END_TO_END_TOLERANCE:g}; quantized models "
                             f"{QUANTIZED_END_TO_END_TOLERANCE:g})")
    parser.add_argument("--same-inputs-tolerance", type=float,
                        help="the same when the simulated layer gets the op's own inputs "
                             f"(default {SAME_INPUTS_TOLERANCE:g}; quantized models 0)")


def run(args) -> int:
    failed = []
    for predictor in predictor_grid(args.windows, args.patterns, args.margins):
        result = crosscheck(args.model, args.data, predictor.window, pattern=predictor.pattern,
                            margin=predictor.margin, limit=args.limit, end_to_end_tolerance=args.tolerance,
                            same_inputs_tolerance=args.same_inputs_tolerance, batch_size=args.batch_size,
                            threads=args.threads, progress=not args.quiet)
        print("\n".join(result.lines()))
        if not result.passed:
            failed.append(str(predictor))
    if failed:
        raise ValidationError(f"the compiled op disagrees with the simulation at {', '.join(failed)}")
    return 0
