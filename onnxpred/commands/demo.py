"""``onnxpred demo``: one Conv→Relu layer run by onnxruntime's Conv and by PredictiveConv."""

from __future__ import annotations

import time

import numpy as np

from .. import op
from ..bench.layers import LayerShape, conv_relu_model, predictive_model
from ..runtime import session

NAME = "demo"
HELP = "run one Conv->Relu layer through onnxruntime's Conv and PredictiveConv and compare them"


def add_arguments(parser) -> None:
    parser.add_argument("--channels", type=int, default=64, help="input and output channels (default 64)")
    parser.add_argument("--size", type=int, default=56, help="feature map height and width (default 56)")
    parser.add_argument("-k", "--window", type=int, default=3, help="prediction window (default 3)")
    parser.add_argument("--seed", type=int, default=0)


def _time(sess, feeds, repeats: int = 5) -> float:
    sess.run(None, feeds)
    start = time.perf_counter()
    for _ in range(repeats):
        sess.run(None, feeds)
    return (time.perf_counter() - start) / repeats


def run(args) -> int:
    rng = np.random.default_rng(args.seed)
    c, size = args.channels, args.size
    x = np.maximum(rng.standard_normal((1, c, size, size)), 0).astype(np.float32)
    w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = (rng.standard_normal(c) * 0.1 - 0.1).astype(np.float32)
    layer = LayerShape("demo", c, c, size)
    dense = conv_relu_model(layer, w, b)
    feeds = {"X": x}
    reference_y = session(dense).run(None, feeds)[0]
    print(f"layer: Conv 3x3 {c}->{c} on {size}x{size}, then Relu; random weights, ReLU-sparse input")
    print(f"  onnxruntime Conv+Relu       {_time(session(dense), feeds) * 1e3:8.2f} ms")
    for window in (1, args.window):
        sess = session(predictive_model(layer, w, b, window, audit=True))
        y, counters = sess.run(None, feeds)
        stats = dict(zip(op.COUNTER_NAMES, counters.tolist()))
        saved = 1 - stats["macs_executed"] / stats["macs_dense"]
        print(
            f"  PredictiveConv window={window:<2}    {_time(sess, feeds) * 1e3:8.2f} ms   "
            f"max |diff| vs Conv {np.abs(y - reference_y).max():.2e}   MACs saved {saved:6.1%}   "
            f"predicted {stats['predicted']} (hit {stats['pred_hit']}, miss {stats['pred_miss']})"
        )
    return 0
