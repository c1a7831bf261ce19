"""Per-layer benchmark: one Conv→activation run by onnxruntime's Conv and by PredictiveConv, or (int8)
by onnxruntime's QLinearConv and by PredictiveQLinearConv, both channels last (NHWC) as onnxruntime runs
its int8 models and as ``onnxpred rewrite`` writes them.

Inputs are built to give a stated *predicted share*: the fraction of (channel, window) pairs that
trigger (every sample ≤ −margin). For each output channel, the bias is set to minus the
share-quantile of the per-window maximum of the sampled pre-activations (minus the margin), so that
exactly that share of windows has every sample ≤ −margin. Efficiency = (dense time × macs_executed / macs_dense) / PredictiveConv time: 1.0 means
the skipped MACs turned into wall-clock time at onnxruntime's own speed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import op
from ..reference import sampling_pattern
from ..rewriter.passes.channels_last import MICROSOFT_DOMAIN
from ..runtime import session
from .libraries import bench_options, bench_session
from .timing import time_sessions_in_turn


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
    against_ms: Optional[float] = None  # PredictiveConv with the --against library

    @property
    def speedup(self) -> float:
        return self.onnxruntime_ms / self.predictive_ms

    @property
    def against_ratio(self) -> float:
        """The --against library's time over the installed one's (below 1: it is faster)."""
        return self.against_ms / self.predictive_ms

    @property
    def efficiency(self) -> float:
        return self.onnxruntime_ms * self.macs_executed / self.macs_dense / self.predictive_ms


def conv_relu_model(layer: LayerShape, w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """onnxruntime's own Conv followed by Relu."""
    nodes = [helper.make_node("Conv", ["X", "W", "B"], ["C"], **layer.conv_attributes),
             helper.make_node("Relu", ["C"], ["Y"])]
    return _model(nodes, [("W", w), ("B", b)], ["Y"])


def predictive_model(layer: LayerShape, w: np.ndarray, b: np.ndarray, window: int, audit: bool = False,
                     pattern: Optional[str] = None, margin: Optional[float] = None,
                     counters: bool = True) -> onnx.ModelProto:
    """The same layer as one PredictiveConv with its counters as a second output unless not ``counters``
    (None: the default pattern and margin)."""
    outputs = ["Y", "counters"] if counters else ["Y"]
    node = op.make_node(["X", "W", "B"], outputs, name=layer.name, window=window, audit=audit,
                        pattern=pattern, margin=margin, **layer.conv_attributes)
    return _model([node], [("W", w), ("B", b)], outputs)


@dataclass(frozen=True)
class QuantizedLayer:
    """A layer's operands quantized as onnxruntime's quantizer does: x uint8 (zero point 0: x ≥ 0), w int8
    symmetric per output channel, B int32 of scale x_scale·w_scale, Y uint8 with zero point 0 (Relu-like)."""

    x: np.ndarray
    constants: tuple[tuple[str, np.ndarray], ...]  # QLinearConv's inputs 1..8 by name

    INPUTS = ("X", "x_scale", "x_zero_point", "W", "w_scale", "w_zero_point", "y_scale", "y_zero_point", "B")

    @classmethod
    def of(cls, layer: LayerShape, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> "QuantizedLayer":
        x_scale = np.float32(x.max() / 255)
        w_scale = (np.abs(w).reshape(len(w), -1).max(axis=1) / 127).astype(np.float32)
        w_q = np.clip(np.rint(w / w_scale.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8)
        b_q = np.rint(b / (x_scale * w_scale)).astype(np.int32)
        output = _identity_session(layer, w, b).run(None, {"X": x})[0]
        y_scale = np.float32(max(output.max(), 1e-6) / 255)
        x_q = np.clip(np.rint(x / x_scale), 0, 255).astype(np.uint8)
        values = (x_scale, np.uint8(0), w_q, w_scale, np.int8(0), y_scale, np.uint8(0), b_q)
        return cls(x_q, tuple((name, np.asarray(value)) for name, value in zip(cls.INPUTS[1:], values)))


def qlinear_conv_model(layer: LayerShape, quantized: QuantizedLayer) -> onnx.ModelProto:
    """onnxruntime's own int8 QLinearConv, Relu-like by its zero point, channels last: the NHWC kernel
    onnxruntime runs inside its int8 models (its NCHW QLinearConv would add two Transposes)."""
    node = helper.make_node("QLinearConv", list(QuantizedLayer.INPUTS), ["Y"], domain=MICROSOFT_DOMAIN,
                            channels_last=1, **layer.conv_attributes)
    return _model([node], quantized.constants, ["Y"], TensorProto.UINT8)


def predictive_qlinear_model(layer: LayerShape, quantized: QuantizedLayer, window: int, audit: bool = False,
                             pattern: Optional[str] = None, margin: Optional[float] = None,
                             counters: bool = True) -> onnx.ModelProto:
    """The same int8 layer as one PredictiveQLinearConv with its counters as a second output unless not
    ``counters``, channels last as in the models ``onnxpred rewrite`` writes."""
    outputs = ["Y", "counters"] if counters else ["Y"]
    node = op.make_node(list(QuantizedLayer.INPUTS), outputs, name=layer.name, op_type=op.QLINEAR_OP_TYPE,
                        window=window, audit=audit, pattern=pattern, margin=margin, channels_last=1,
                        **layer.conv_attributes)
    return _model([node], quantized.constants, outputs, TensorProto.UINT8)


def _model(nodes, constants, outputs, data_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A graph of ``nodes`` from input X to ``outputs`` (X and Y of ``data_type``), ``constants`` as
    ``(name, array)`` initializers."""
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("X", data_type, None)],
        [helper.make_tensor_value_info(o, TensorProto.INT64 if o == "counters" else data_type, None) for o in outputs],
        [numpy_helper.from_array(value, name) for name, value in constants],
    )
    imports = [helper.make_opsetid("", 17), op.opset_import(), helper.make_opsetid(MICROSOFT_DOMAIN, 1)]
    return helper.make_model(graph, opset_imports=imports)


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
    return session(_model([helper.make_node("Conv", ["X", "W", "B"], ["Y"], **layer.conv_attributes)],
                          [("W", w), ("B", b)], ["Y"]))


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
               pattern: str = "diagonal", margin: float = 0.0, int8: bool = False, clock: str = "wall",
               against: Optional[str] = None) -> LayerTiming:
    """One layer against onnxruntime's Conv+Relu, or with ``int8`` its QLinearConv against
    PredictiveQLinearConv (the float inputs quantized, :class:`QuantizedLayer`; ``margin`` in real units).
    ``clock``: see :func:`time_sessions_in_turn`; ``against``: another op library's path, whose
    PredictiveConv is timed in turn with the other two."""
    x, w, b = layer_inputs(layer, window, share, pattern=pattern, margin=margin)
    if int8:
        quantized = QuantizedLayer.of(layer, x, w, b)
        dense = qlinear_conv_model(layer, quantized)
        predictive = functools.partial(predictive_qlinear_model, layer, quantized, window, pattern=pattern,
                                       margin=margin)
        x = np.ascontiguousarray(quantized.x.transpose(0, 2, 3, 1))  # both channels last
    else:
        dense = conv_relu_model(layer, w, b)
        predictive = functools.partial(predictive_model, layer, w, b, window, pattern=pattern, margin=margin)
    # Timed as deployed, without the counters output: the kernels skip counting where no one reads it.
    timed = predictive(counters=False)
    sessions = [bench_session(model, bench_options(threads)) for model in (dense, timed)]
    if against:
        sessions.append(bench_session(timed, bench_options(threads, against)))
    feeds = {"X": x}
    _, counters = bench_session(predictive(), bench_options(threads)).run(None, feeds)
    stats = dict(zip(op.COUNTER_NAMES, counters.tolist()))
    dense_ms, predictive_ms, *against_ms = time_sessions_in_turn(sessions, [feeds], repeats, clock)
    return LayerTiming(layer, window, share, threads, dense_ms, predictive_ms, stats["macs_dense"],
                       stats["macs_executed"], stats["predicted"] / stats["outputs"], *against_ms)


def run_layer_benchmark(models: Sequence[str], windows: Sequence[int], shares: Sequence[float],
                        threads: Sequence[int], repeats: int = 10, layer_filter: Optional[str] = None,
                        pattern: str = "diagonal", margin: float = 0.0, int8: bool = False, clock: str = "wall",
                        against: Optional[str] = None):
    """Yields one LayerTiming per (model layer, window, share, thread count)."""
    for model in models:
        for layer in MODEL_LAYERS[model]:
            if layer_filter and layer_filter not in layer.name:
                continue
            for window in windows:
                for share in shares if window > 1 else [0.0]:
                    for n_threads in threads:
                        yield model, time_layer(layer, window, share, n_threads, repeats, pattern, margin, int8,
                                                clock, against)
