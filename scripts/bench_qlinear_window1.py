"""PredictiveQLinearConv at window 1 against onnxruntime's QLinearConv on the 3x3 layer shapes of VGG-16 and
ResNet-18 (224x224 input, batch 1): the time ratio, runs of the two interleaved (A B A B ...) so that the
machine's load affects both alike; the median of the per-pair ratios is printed.

Usage: python scripts/bench_qlinear_window1.py [--threads 1] [--pairs 7] [--models vgg16,resnet18]
(ONNXPRED_LIBRARY picks the op library, ONNXPRED_KERNEL its path.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import onnxpred
from onnxpred import op

# (in channels, out channels, input side, stride) of every distinct 3x3 convolution.
LAYERS = {
    "vgg16": [(3, 64, 224, 1), (64, 64, 224, 1), (64, 128, 112, 1), (128, 128, 112, 1), (128, 256, 56, 1),
              (256, 256, 56, 1), (256, 512, 28, 1), (512, 512, 28, 1), (512, 512, 14, 1)],
    "resnet18": [(64, 64, 56, 1), (64, 128, 56, 2), (128, 128, 28, 1), (128, 256, 28, 2), (256, 256, 14, 1),
                 (256, 512, 14, 2), (512, 512, 7, 1)],
}


def models(in_channels: int, out_channels: int, stride: int, rng: np.random.Generator):
    constants = {
        "x_scale": np.float32(0.02), "x_zero_point": np.uint8(10),
        "w": rng.integers(-127, 128, (out_channels, in_channels, 3, 3)).astype(np.int8),
        "w_scale": rng.uniform(0.001, 0.01, out_channels).astype(np.float32),
        "w_zero_point": np.zeros(out_channels, np.int8), "y_scale": np.float32(0.2), "y_zero_point": np.uint8(0),
        "B": rng.integers(-5000, 5000, out_channels).astype(np.int32),
    }
    initializers = [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()]
    names = list(op.QLINEAR_INPUT_NAMES)
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride])
    theirs = helper.make_node("QLinearConv", names, ["Y"], **conv)
    ours = op.make_node(names, ["Y"], name="q", op_type=op.QLINEAR_OP_TYPE, window=1, **conv)
    built = []
    for node in (theirs, ours):
        graph = helper.make_graph([node], "layer", [helper.make_tensor_value_info("x", TensorProto.UINT8, None)],
                                  [helper.make_tensor_value_info("Y", TensorProto.UINT8, None)], initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), op.opset_import()])
        model.ir_version = 8
        built.append(model)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--models", default="vgg16,resnet18")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'model':9} {'layer':22} {'onnxruntime ms':>14} {'ours ms':>8} {'speed ratio':>11}")
    for model_name in args.models.split(","):
        for in_channels, out_channels, side, stride in LAYERS[model_name]:
            theirs_model, ours_model = models(in_channels, out_channels, stride, rng)
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = args.threads
            theirs = ort.InferenceSession(theirs_model.SerializeToString(), options,
                                          providers=["CPUExecutionProvider"])
            ours = onnxpred.session(ours_model, intra_op_num_threads=args.threads)
            x = rng.integers(0, 256, (1, in_channels, side, side)).astype(np.uint8)
            for session in (theirs, ours):  # warm up: packing, allocations
                session.run(None, {"x": x})
            times = {"theirs": [], "ours": []}
            for _ in range(args.pairs):
                for name, session in (("theirs", theirs), ("ours", ours)):
                    start = time.perf_counter()
                    session.run(None, {"x": x})
                    times[name].append(time.perf_counter() - start)
            ratio = statistics.median(t / o for t, o in zip(times["theirs"], times["ours"]))
            layer = f"{in_channels}->{out_channels} {side}x{side}/{stride}"
            print(f"{model_name:9} {layer:22} {statistics.median(times['theirs']) * 1e3:14.2f} "
                  f"{statistics.median(times['ours']) * 1e3:8.2f} {ratio:11.2f}", flush=True)


if __name__ == "__main__":
    main()
