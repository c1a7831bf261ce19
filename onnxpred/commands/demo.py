"""``onnxpred demo``: one Conv→Relu layer run by onnxruntime's Conv and by PredictiveConv."""

from __future__ import annotations

import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import op
from ..runtime import session

NAME = "demo"
HELP = "run one Conv->Relu layer through onnxruntime's Conv and PredictiveConv and compare them"


def add_arguments(parser) -> None:
    parser.add_argument("--channels", type=int, default=64, help="input and output channels (default 64)")
    parser.add_argument("--size", type=int, default=56, help="feature map height and width (default 56)")
    parser.add_argument("-k", "--window", type=int, default=3, help="prediction window (default 3)")
    parser.add_argument("--seed", type=int, default=0)


def _layer_model(w: np.ndarray, b: np.ndarray, node: onnx.NodeProto, extra_nodes=(), outputs=("Y",)) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node, *extra_nodes],
        "layer",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT if name == "Y" else TensorProto.INT64, None) for name in outputs],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), op.opset_import()])


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
    conv = helper.make_node("Conv", ["X", "W", "B"], ["C"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    relu = helper.make_node("Relu", ["C"], ["Y"])
    dense = _layer_model(w, b, conv, [relu])
    feeds = {"X": x}
    reference_y = session(dense).run(None, feeds)[0]
    print(f"layer: Conv 3x3 {c}->{c} on {size}x{size}, then Relu; random weights, ReLU-sparse input")
    print(f"  onnxruntime Conv+Relu       {_time(session(dense), feeds) * 1e3:8.2f} ms")
    for window in (1, args.window):
        node = op.make_node(["X", "W", "B"], ["Y", "counters"], name="pconv", kernel_shape=[3, 3],
                            pads=[1, 1, 1, 1], window=window, audit=True)
        sess = session(_layer_model(w, b, node, outputs=("Y", "counters")))
        y, counters = sess.run(None, feeds)
        stats = dict(zip(op.COUNTER_NAMES, counters.tolist()))
        saved = 1 - stats["macs_executed"] / stats["macs_dense"]
        print(
            f"  PredictiveConv window={window:<2}    {_time(sess, feeds) * 1e3:8.2f} ms   "
            f"max |diff| vs Conv {np.abs(y - reference_y).max():.2e}   MACs saved {saved:6.1%}   "
            f"predicted {stats['predicted']} (hit {stats['pred_hit']}, miss {stats['pred_miss']})"
        )
    return 0
