"""``onnxpred bench-layers``: PredictiveConv vs onnxruntime's Conv on the layer shapes of known CNNs."""

from __future__ import annotations

from .. import op
from ..bench import comparison
from ..bench.layers import MODEL_LAYERS, run_layer_benchmark
from ..errors import UserError

NAME = "bench-layers"
HELP = ("time PredictiveConv against onnxruntime's Conv+Relu (--int8: PredictiveQLinearConv against QLinearConv) on "
        "the layer shapes of VGG-16, ResNet-18, AlexNet, EfficientNet-Lite0")


def _numbers(text: str, kind):
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"expected a comma-separated list, got {text!r}") from None


def add_arguments(parser) -> None:
    parser.add_argument("--models", default="vgg16,resnet18,alexnet,efficientnet_lite0_1x1",
                        help=f"comma-separated, from {', '.join(MODEL_LAYERS)}")
    parser.add_argument("-k", "--windows", default="1,3", help="window sizes (default 1,3)")
    parser.add_argument("--shares", default="0,0.3,0.5,0.7",
                        help="predicted shares of (channel, window) pairs the inputs are built for (default 0,0.3,0.5,0.7)")
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed runs per measurement; the median (--clock cpu: the minimum) is shown")
    parser.add_argument("--layer", help="only layers whose name contains this text")
    parser.add_argument("--pattern", default=op.ATTRIBUTES["pattern"].default, choices=op.PATTERNS,
                        help="the sampling pattern (default %(default)s)")
    parser.add_argument("--margin", type=float, default=op.ATTRIBUTES["margin"].default,
                        help="the confidence margin (default %(default)g)")
    parser.add_argument("--int8", action="store_true",
                        help="the layers quantized (uint8 activations, per-channel int8 weights): onnxruntime's "
                             "QLinearConv against PredictiveQLinearConv")
    comparison.add_arguments(parser)


def run(args) -> int:
    models = _numbers(args.models, str)
    unknown = [m for m in models if m not in MODEL_LAYERS]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_LAYERS)}")
    shares = _numbers(args.shares, float)
    if any(not 0 <= s < 1 for s in shares):
        raise UserError("shares must lie in [0, 1)")
    try:
        op.ATTRIBUTES["margin"].check(args.margin)
    except ValueError as error:
        raise UserError(str(error)) from None
    if args.int8:
        grouped = [f"{model} {layer.name}" for model in models for layer in MODEL_LAYERS[model]
                   if layer.group > 1 and (not args.layer or args.layer in layer.name)]
        if grouped:
            raise UserError(f"--int8: PredictiveQLinearConv v1 takes ungrouped convs only, not {grouped[0]}"
                            + (f" and {len(grouped) - 1} more" if len(grouped) > 1 else ""))
    compared = comparison.parse(args, quantized=args.int8)
    print(f"{'int8, ' if args.int8 else ''}pattern {args.pattern}, margin {args.margin:g}"
          + (f", clock cpu: {comparison.CPU_CLOCK}" if compared.clock == "cpu" else ""))
    if compared.against:
        print(f"against: the predictive op with {compared.against}; ratio = against ms / PC ms (below 1: it is faster)")
    header = (f"{'model':<22} {'layer':<16} {'C→M':>10} {'size':>4} {'k':>2} {'share':>5} {'thr':>3} "
              f"{'ORT ms':>8} {'PC ms':>8} {'MACs exec':>9} {'speedup':>7} {'effic.':>6}"
              + (f" {'against ms':>10} {'ratio':>6}" if compared.against else ""))
    print(header)
    print("-" * len(header))
    for model, t in run_layer_benchmark(models, _numbers(args.windows, int), shares, compared.threads, args.repeats,
                                        args.layer, args.pattern, args.margin, args.int8, compared.clock,
                                        compared.against):
        layer = t.layer
        print(f"{model:<22} {layer.name:<16} {f'{layer.in_channels}→{layer.out_channels}':>10} {layer.size:>4} "
              f"{t.window:>2} {t.predicted_share:>5.2f} {t.threads:>3} {t.onnxruntime_ms:>8.2f} "
              f"{t.predictive_ms:>8.2f} {t.macs_executed / t.macs_dense:>9.1%} {t.speedup:>7.2f} {t.efficiency:>6.2f}"
              + (f" {t.against_ms:>10.2f} {t.against_ratio:>6.3f}" if compared.against else ""),
              flush=True)
    return 0
