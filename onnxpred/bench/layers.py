"""Per-layer benchmark: one Conv→activation run by onnxruntime's Conv and by PredictiveConv.

Inputs are built to give a stated *predicted share*: the fraction of (channel, window) pairs that
trigger (every sample ≤ −margin). For each output channel, the bias is set to minus the
share-quantile of the per-window maximum of the sampled pre-activations (minus the margin), so that
exactly that share of windows has every sample ≤ −margin. Efficiency = (dense time × macs_executed / macs_dense) / PredictiveConv time: 1.0 means
the skipped MACs turned into wall-clock time at onnxruntime's own speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import op
from ..reference import sampling_pattern
from ..runtime import quiet_options, session
from .timing import time_in_turn


@dataclass(frozen=True)
class LayerShape:
    name: str
    in_channels: int
    out_channels: int
    size: int  # input height = width
    kernel: int = 3
    stride: int = 1
    group: int = 1

    @property
    def pad(self) -> int:
        return self.kernel // 2

    @property
    def conv_attributes(self) -> dict:
        """The attributes of this layer's ONNX Conv."""
        return dict(kernel_shape=[self.kernel] * 2, pads=[self.pad] * 4, strides=[self.stride] * 2, group=self.group)

    @property
    def out_size(self) -> int:
        return (self.size + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def macs(self) -> int:
        return self.out_channels * self.out_size**2 * (self.in_channels // self.group) * self.kernel**2


# The distinct Conv shapes of the networks (torchvision definitions at 224×224).
MODEL_LAYERS = {
    "vgg16": [
        LayerShape("conv1_2", 64, 64, 224),
        LayerShape("conv2_1", 64, 128, 112),
        LayerShape("conv2_2", 128, 128, 112),
        LayerShape("conv3_1", 128, 256, 56),
        LayerShape("conv3_2", 256, 256, 56),
        LayerShape("conv4_1", 256, 512, 28),
        LayerShape("conv4_2", 512, 512, 28),
        LayerShape("conv5", 512, 512, 14),
    ],
    "resnet18": [
        LayerShape("layer1", 64, 64, 56),
        LayerShape("layer2.0.conv1", 64, 128, 56, stride=2),
        LayerShape("layer2", 128, 128, 28),
        LayerShape("layer3.0.conv1", 128, 256, 28, stride=2),
        LayerShape("layer3", 256, 256, 14),
        LayerShape("layer4.0.conv1", 256, 512, 14, stride=2),
        LayerShape("layer4", 512, 512, 7),
    ],
    "alexnet": [
        LayerShape("conv2", 64, 192, 27, kernel=5),
        LayerShape("conv3", 192, 384, 13),
        LayerShape("conv4", 384, 256, 13),
        LayerShape("conv5", 256, 256, 13),
    ],
    "efficientnet_lite0_1x1": [
        LayerShape("expand 16→96", 16, 96, 112, kernel=1),
        LayerShape("expand 24→144", 24, 144, 56, kernel=1),
        LayerShape("expand 40→240", 40, 240, 28, kernel=1),
        LayerShape("expand 80→480", 80, 480, 14, kernel=1),
        LayerShape("expand 112→672", 112, 672, 14, kernel=1),
        LayerShape("expand 192→1152", 192, 1152, 7, kernel=1),
        LayerShape("head 320→1280", 320, 1280, 7, kernel=1),
    ],
    "efficientnet_lite0_depthwise": [
        LayerShape("dw 32@112", 32, 32, 112, group=32),
        LayerShape("dw 96@112 s2", 96, 96, 112, stride=2, group=96),
        LayerShape("dw 144@56", 144, 144, 56, group=144),
        LayerShape("dw 144@56 5x5 s2", 144, 144, 56, kernel=5, stride=2, group=144),
        LayerShape("dw 240@28 5x5", 240, 240, 28, kernel=5, group=240),
        LayerShape("dw 240@28 s2", 240, 240, 28, stride=2, group=240),
        LayerShape("dw 480@14", 480, 480, 14, group=480),
        LayerShape("dw 480@14 5x5", 480, 480, 14, kernel=5, group=480),
        LayerShape("dw 672@14 5x5", 672, 672, 14, kernel=5, group=672),
        LayerShape("dw 672@14 5x5 s2", 672, 672, 14, kernel=5, stride=2, group=672),
        LayerShape("dw 1152@7 5x5", 1152, 1152, 7, kernel=5, group=1152),
        LayerShape("dw 1152@7", 1152, 1152, 7, group=1152),
    ],
}


@dataclass
class LayerTiming:
    layer: LayerShape
    window: int
    share: float
    threads: int
    onnxruntime_ms: float
    predictive_ms: float
    macs_dense: int
    macs_executed: int
    predicted_share: float  # measured: predicted outputs / outputs

    @property
    def speedup(self) -> float:
        return self.onnxruntime_ms / self.predictive_ms

    @property
    def efficiency(self) -> float:
        return self.onnxruntime_ms * self.macs_executed / self.macs_dense / self.predictive_ms


def conv_relu_model(layer: LayerShape, w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """onnxruntime's own Conv followed by Relu."""
    nodes = [helper.make_node("Conv", ["X", "W", "B"], ["C"], **layer.conv_attributes),
             helper.make_node("Relu", ["C"], ["Y"])]
    return _model(nodes, w, b, ["Y"])


def predictive_model(layer: LayerShape, w: np.ndarray, b: np.ndarray, window: int, audit: bool = False,
                     pattern: Optional[str] = None, margin: Optional[float] = None) -> onnx.ModelProto:
    """The same layer as one PredictiveConv with its counters as a second output (None: the default
    pattern and margin)."""
    node = op.make_node(["X", "W", "B"], ["Y", "counters"], name=layer.name, window=window, audit=audit,
                        pattern=pattern, margin=margin, **layer.conv_attributes)
    return _model([node], w, b, ["Y", "counters"])


def _model(nodes, w, b, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(o, TensorProto.INT64 if o == "counters" else TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), op.opset_import()])


def layer_inputs(layer: LayerShape, window: int, share: float, seed: int = 0, pattern: str = "diagonal",
                 margin: float = 0.0):
    """(x, w, b) whose predicted share of (channel, window) pairs is ``share``."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((1, layer.in_channels, layer.size, layer.size)), 0).astype(np.float32)
    fan_in = layer.in_channels // layer.group * layer.kernel**2
    w = (rng.standard_normal((layer.out_channels, layer.in_channels // layer.group, layer.kernel, layer.kernel))
         * np.sqrt(2 / fan_in)).astype(np.float32)
    zero_bias = np.zeros(layer.out_channels, np.float32)
    pre = _identity_session(layer, w, zero_bias).run(None, {"X": x})[0][0]  # [M, oH, oW]
    sorted_max = np.sort(_sampled_window_max(pre, sampling_pattern(pattern, window)), axis=1)  # [M, windows]
    # Per channel, a threshold with `share` of the windows' sample maxima at or below it; the bias
    # moves it to -margin, so exactly those windows have every sample <= -margin.
    count, windows = int(round(share * sorted_max.shape[1])), sorted_max.shape[1]
    if count == 0:
        threshold = sorted_max[:, 0] - 1.0
    elif count == windows:
        threshold = sorted_max[:, -1] + 1.0
    else:
        threshold = (sorted_max[:, count - 1] + sorted_max[:, count]) / 2
    b = -threshold - margin
    return x, w, b.astype(np.float32)


def _identity_session(layer: LayerShape, w: np.ndarray, b: np.ndarray):
    return session(_model([helper.make_node("Conv", ["X", "W", "B"], ["Y"], **layer.conv_attributes)], w, b, ["Y"]))


def _sampled_window_max(pre: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    window = pattern.shape[0]
    m, height, width = pre.shape
    rows, cols = np.arange(height), np.arange(width)
    sample = pattern[rows[:, None] % window, cols[None, :] % window]
    masked = np.where(sample, pre, -np.inf)
    win_h, win_w = -(-height // window), -(-width // window)
    padded = np.full((m, win_h * window, win_w * window), -np.inf, np.float32)
    padded[:, :height, :width] = masked
    return padded.reshape(m, win_h, window, win_w, window).max(axis=(2, 4)).reshape(m, -1)


def time_layer(layer: LayerShape, window: int, share: float, threads: int, repeats: int = 10,
               pattern: str = "diagonal", margin: float = 0.0) -> LayerTiming:
    x, w, b = layer_inputs(layer, window, share, pattern=pattern, margin=margin)
    dense = session(conv_relu_model(layer, w, b), **quiet_options(threads))
    predictive = session(predictive_model(layer, w, b, window, pattern=pattern, margin=margin),
                         **quiet_options(threads))
    feeds = {"X": x}
    _, counters = predictive.run(None, feeds)
    stats = dict(zip(op.COUNTER_NAMES, counters.tolist()))
    dense.run(None, feeds)
    dense_ms, predictive_ms = time_in_turn(dense, predictive, [feeds], repeats)
    return LayerTiming(layer, window, share, threads, dense_ms, predictive_ms, stats["macs_dense"],
                       stats["macs_executed"], stats["predicted"] / stats["outputs"])


def run_layer_benchmark(models: Sequence[str], windows: Sequence[int], shares: Sequence[float],
                        threads: Sequence[int], repeats: int = 10, layer_filter: Optional[str] = None,
                        pattern: str = "diagonal", margin: float = 0.0):
    """Yields one LayerTiming per (model layer, window, share, thread count)."""
    for model in models:
        for layer in MODEL_LAYERS[model]:
            if layer_filter and layer_filter not in layer.name:
                continue
            for window in windows:
                for share in shares if window > 1 else [0.0]:
                    for n_threads in threads:
                        yield model, time_layer(layer, window, share, n_threads, repeats, pattern, margin)
