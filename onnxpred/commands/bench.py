"""``onnxpred bench``: a model against its rewrite in onnxruntime, per layer and end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bench import comparison
from ..errors import InputError, UserError

NAME = "bench"
HELP = "time MODEL.onnx against its PredictiveConv rewrite in onnxruntime (level ALL), per layer and end to end"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="an ONNX image classifier (e.g. from `onnxpred export`)")
    parser.add_argument("-k", "--window", type=int, default=3, help="prediction window (default 3)")
    parser.add_argument("--data", help="image folder (default: the 20 built-in ImageNet images)")
    parser.add_argument("--images", type=int, default=8, help="images to time (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the images per timing (default 3)")
    parser.add_argument("--order-channels", action=argparse.BooleanOptionalAction,
                        help="order each rewritten layer's output channels by their activity on the images after "
                             "the timed ones (the model computes the same; windows skip whole blocks of rarely "
                             "active channels); default: on for int8 models, off for float ones")
    comparison.add_arguments(parser)


def run(args) -> int:
    from ..bench.model import benchmark_model

    if not Path(args.model).is_file():
        raise InputError(f"{args.model}: no such file")
    if args.window < 1:
        raise UserError(f"-k must be >= 1, got {args.window}")
    compared = comparison.parse(args)
    against = compared.against
    runs = ("median over runs" if compared.clock == "wall"
            else f"layers by onnxruntime's profiler (wall, median over runs), end to end by {comparison.CPU_CLOCK}")
    if against:
        print(f"against: the rewrite with {against}; ratio = against / PC (below 1: it is faster)")
    for t in benchmark_model(args.model, args.window, args.data, args.images, compared.threads, args.repeats,
                             compared.clock, against, order_channels=args.order_channels, say=print):
        print(f"\n== {t.threads} thread(s), window {args.window}: per image, {runs} ==")
        header = (f"{'layer':<44} {'orig µs':>9} {'PC µs':>9} {'MACs exec':>9} {'speedup':>7} {'effic.':>6}"
                  + (f" {'against µs':>10} {'ratio':>6}" if against else ""))
        print(header)
        print("-" * len(header))
        for layer in t.layers:
            print(f"{layer.name[:44]:<44} {layer.original_us:>9.0f} {layer.predictive_us:>9.0f} "
                  f"{layer.macs_executed / layer.macs_dense:>9.1%} {layer.speedup:>7.2f} {layer.efficiency:>6.2f}"
                  + (f" {layer.against_us:>10.0f} {layer.against_ratio:>6.3f}" if against else ""))
        original_sum = sum(layer.original_us for layer in t.layers)
        predictive_sum = sum(layer.predictive_us for layer in t.layers)
        against_sum = sum(layer.against_us for layer in t.layers) if against else 0.0
        print(f"{'rewritten layers, total':<44} {original_sum:>9.0f} {predictive_sum:>9.0f} "
              f"{'':>9} {original_sum / predictive_sum:>7.2f}"
              + (f" {'':>6} {against_sum:>10.0f} {against_sum / predictive_sum:>6.3f}" if against else ""))
        print(f"end to end: original {t.original_ms:.2f} ms, rewritten {t.predictive_ms:.2f} ms, "
              f"speedup {t.speedup:.2f}x"
              + (f"; against {t.against_ms:.2f} ms, ratio {t.against_ratio:.3f}" if against else ""))
        print(f"layout nodes (NCHWc reorders, NHWC transposes): original {t.reorder_nodes['original']}, "
              f"rewritten {t.reorder_nodes['rewritten']} "
              f"({t.reorder_us:.0f} µs per image)")
        print(f"peak RSS: original {t.peak_rss_mb['original']:.0f} MB, rewritten {t.peak_rss_mb['rewritten']:.0f} MB "
              f"({t.peak_rss_mb['rewritten'] / t.peak_rss_mb['original']:.2f}x)")
    return 0
