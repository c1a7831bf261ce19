"""The int8 op, PredictiveQLinearConv: every kernel path equals the NumPy reference bit for bit; at window 1
it equals onnxruntime's own int8 convolution; bad inputs are refused with the node's name."""

from __future__ import annotations

import itertools
from typing import Optional

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxpred
from onnxpred import op
from onnxpred import reference_quantized as rq

ELEMENT_TYPES = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}


def quantized_params(rng, x_type, channels: int, *, per_channel: bool, zero_point_at_min: bool = False) -> dict:
    """Scales and zero points like a calibrated model's; y_zero_point inside the type's range."""
    info = np.iinfo(x_type)
    return dict(
        x_scale=np.float32(rng.uniform(0.005, 0.05)),
        x_zero_point=x_type(rng.integers(info.min, info.max + 1)),
        w_scale=(rng.uniform(0.001, 0.02, channels).astype(np.float32) if per_channel
                 else np.float32(rng.uniform(0.001, 0.02))),
        y_scale=np.float32(rng.uniform(0.05, 0.5)),
        y_zero_point=x_type(info.min if zero_point_at_min else rng.integers(info.min, info.max // 2)),
    )


def qlinear_model(w: np.ndarray, params: dict, b: Optional[np.ndarray] = None, *, x_type=np.uint8,
                  constant: tuple[str, ...] = ("w", "w_zero_point"), w_zero_point: Optional[np.ndarray] = None,
                  with_counters: bool = True, op_type: str = op.QLINEAR_OP_TYPE, **attributes) -> onnx.ModelProto:
    """A single PredictiveQLinearConv (or, with op_type="QLinearConv", onnxruntime's) node. ``w`` and the
    inputs named in ``constant`` are initializers; the scales and zero points are initializers too."""
    values = {"w": w, "w_zero_point": np.zeros(np.shape(params["w_scale"]), np.int8) if w_zero_point is None
              else w_zero_point}
    values.update({name: np.asarray(params[name]) for name in ("x_scale", "x_zero_point", "w_scale", "y_scale",
                                                                "y_zero_point")})
    inputs = [helper.make_tensor_value_info("x", ELEMENT_TYPES[x_type], None)]
    initializers = []
    for name, value in values.items():
        if name in ("w", "w_zero_point") and name not in constant:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.INT8, None))
        else:
            initializers.append(numpy_helper.from_array(value, name))
    names = list(op.QLINEAR_INPUT_NAMES[:8])
    if b is not None:
        initializers.append(numpy_helper.from_array(b, "B"))
        names.append("B")
    y_type = ELEMENT_TYPES[np.asarray(params["y_zero_point"]).dtype.type]
    outputs = [helper.make_tensor_value_info("Y", y_type, None)]
    attributes.setdefault("kernel_shape", list(w.shape[2:]))
    if op_type == "QLinearConv":
        node = helper.make_node("QLinearConv", names, ["Y"], name="q", **attributes)
    else:
        if with_counters:
            outputs.append(helper.make_tensor_value_info("counters", TensorProto.INT64, [7]))
        node = op.make_node(names, [o.name for o in outputs], name="q", op_type=op_type, **attributes)
    graph = helper.make_graph([node], "qlinear", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), op.opset_import()])
    model.ir_version = 8
    return model


def run_qlinear(x, w, params, b=None, *, threads: int = 1, feeds: Optional[dict] = None, **attributes):
    model = qlinear_model(w, params, b, x_type=x.dtype.type, **attributes)
    return onnxpred.session(model, intra_op_num_threads=threads).run(None, {"x": x, **(feeds or {})})


def reference(x, w, params, b=None, **attributes):
    return rq.predictive_qlinear_conv(x, params["x_scale"], params["x_zero_point"], w, params["w_scale"],
                                      np.zeros(1, np.int8), params["y_scale"], params["y_zero_point"], b, **attributes)


def random_layer(rng, x_type, in_channels, out_channels, kernel, height, width, *, per_channel=True, batch=1,
                 bias_spread=3000):
    info = np.iinfo(x_type)
    x = rng.integers(info.min, info.max + 1, (batch, in_channels, height, width)).astype(x_type)
    w = rng.integers(-127, 128, (out_channels, in_channels, kernel, kernel)).astype(np.int8)
    b = rng.integers(-bias_spread, bias_spread, out_channels).astype(np.int32)
    return x, w, b, quantized_params(rng, x_type, out_channels, per_channel=per_channel)


def assert_counters_match(counters: np.ndarray, expected: np.ndarray) -> None:
    """As the float32 op's: equal, except that a kernel may execute more MACs than the reference's lower
    bound (a block of channels computed for the windows that keep some of them)."""
    np.testing.assert_array_equal(counters[:6], expected[:6])
    assert expected[6] <= counters[6] <= expected[5], (counters, expected)


# --- Every path against the reference ------------------------------------------------------------------

# (name, in_channels, out_channels, kernel, height, width, attributes): odd plane sizes clip windows at
# the bottom and right edges; 70 and 67 channels leave partial channel groups and blocks on every path;
# 35 x 37 leaves partial blocks of the input copy's 16 x 16 transposes.
LAYERS = [
    ("3x3 wide rows", 35, 20, 3, 5, 37, dict(pads=[1, 1, 1, 1])),
    ("3x3 pad 1", 21, 70, 3, 11, 13, dict(pads=[1, 1, 1, 1])),
    ("3x3 stride 2", 16, 24, 3, 13, 10, dict(pads=[1, 1, 1, 1], strides=[2, 2])),
    ("1x1", 67, 33, 1, 9, 7, {}),
    ("3x3 dilation 2, uneven pads", 5, 17, 3, 12, 12, dict(pads=[2, 0, 1, 2], dilations=[2, 2])),
]


@pytest.mark.parametrize("window", [1, 2, 3, 4])
@pytest.mark.parametrize("layer", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_every_path_equals_the_reference(int8_kernel_path, layer, window):
    _, in_channels, out_channels, kernel, height, width, conv = layer
    rng = np.random.default_rng([window, in_channels, out_channels])
    margins = itertools.cycle([0.0, 0.25, 2.0])
    for i, pattern in enumerate(op.PATTERNS):
        x_type = (np.uint8, np.int8)[i % 2]
        x, w, b, params = random_layer(rng, x_type, in_channels, out_channels, kernel, height, width,
                                       per_channel=i % 3 != 2, batch=1 + i % 2)
        attributes = dict(conv, window=window, pattern=pattern, margin=next(margins), audit=i % 2)
        y, counters = run_qlinear(x, w, params, b, threads=1 + i % 2, **attributes)
        expected_y, expected_counters = reference(x, w, params, b, **attributes)
        assert y.dtype == expected_y.dtype
        np.testing.assert_array_equal(y, expected_y, err_msg=f"{pattern} margin {attributes['margin']}")
        assert_counters_match(counters, expected_counters)
        if window > 1 and attributes["margin"] == 0:
            assert expected_counters[op.COUNTER_NAMES.index("predicted")] > 0  # the data exercises prediction


@pytest.mark.parametrize("window", [1, 2, 3])
@pytest.mark.parametrize("layer", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_channels_last_reads_and_writes_nhwc_on_every_path(int8_kernel_path, layer, window):
    """channels_last = 1: the same outputs and counters as the NCHW op, on x and Y transposed to NHWC."""
    _, in_channels, out_channels, kernel, height, width, conv = layer
    rng = np.random.default_rng([window, in_channels, out_channels, 1])
    for i, x_type in enumerate((np.uint8, np.int8)):
        x, w, b, params = random_layer(rng, x_type, in_channels, out_channels, kernel, height, width, batch=1 + i)
        attributes = dict(conv, window=window, pattern=op.PATTERNS[i], audit=i)
        expected_y, expected_counters = reference(x, w, params, b, **attributes)
        x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        y, counters = run_qlinear(x_nhwc, w, params, b, threads=1 + i, channels_last=1, **attributes)
        np.testing.assert_array_equal(y, expected_y.transpose(0, 2, 3, 1))
        assert_counters_match(counters, expected_counters)
        reference_y, _ = reference(x_nhwc, w, params, b, channels_last=True, **attributes)
        np.testing.assert_array_equal(reference_y, y)


# (name, in_channels, out_channels, kernel, height, width, attributes) where a channels-last uint8 x is read
# in place (C a multiple of 4) by the pixels whose taps lie inside it: whole and partial 64-byte gather
# chunks (a partial one runs past a pixel, so the last image's last rows read the copy), rows too short
# to hold a chunk's run-on, no padding at all, and a kernel wider than the input (no pixel reads x).
IN_PLACE_LAYERS = [
    ("64 channels pad 1", 64, 70, 3, 8, 11, dict(pads=[1, 1, 1, 1])),
    ("128 channels stride 2", 128, 20, 3, 9, 8, dict(pads=[1, 1, 1, 1], strides=[2, 2])),
    ("68 channels stride 2", 68, 24, 3, 9, 8, dict(pads=[0, 1, 1, 0], strides=[2, 2])),
    ("1x1 unpadded", 20, 33, 1, 5, 7, {}),
    ("rows shorter than a chunk", 4, 17, 3, 6, 3, dict(pads=[1, 1, 1, 1])),
    ("dilation 2, uneven pads", 8, 17, 3, 12, 12, dict(pads=[2, 0, 1, 2], dilations=[2, 2])),
    ("kernel wider than the input", 12, 9, 5, 4, 4, dict(pads=[2, 2, 2, 2])),
]


@pytest.mark.parametrize("window", [1, 2, 3])
@pytest.mark.parametrize("layer", IN_PLACE_LAYERS, ids=[layer[0] for layer in IN_PLACE_LAYERS])
def test_channels_last_uint8_x_read_in_place_equals_the_reference(int8_kernel_path, layer, window):
    _, in_channels, out_channels, kernel, height, width, conv = layer
    rng = np.random.default_rng([window, in_channels, out_channels, 2])
    for batch in (1, 3):
        x, w, b, params = random_layer(rng, np.uint8, in_channels, out_channels, kernel, height, width, batch=batch)
        attributes = dict(conv, window=window, pattern=op.PATTERNS[batch % len(op.PATTERNS)], audit=batch == 3)
        expected_y, expected_counters = reference(x, w, params, b, **attributes)
        x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        y, counters = run_qlinear(x_nhwc, w, params, b, threads=batch % 2 + 1, channels_last=1, **attributes)
        np.testing.assert_array_equal(y, expected_y.transpose(0, 2, 3, 1))
        assert_counters_match(counters, expected_counters)


@pytest.mark.parametrize("kernel, pads", [(1, [0, 0, 0, 0]), (3, [1, 1, 0, 0])], ids=["1x1", "3x3 unpadded end"])
def test_gathered_pixels_read_in_place_stay_inside_x(int8_kernel_path, kernel, pads):
    """A gather chunk of 64 channels runs past a 20-channel pixel: x's last pixels, rest outputs of windows
    that keep one channel (gathered), must be read from the copy (the sanitizer build checks the reads)."""
    rng = np.random.default_rng(5)
    x, w, b, params = random_layer(rng, np.uint8, 20, 33, kernel, 6, 8, batch=2)
    b[:] = -10**6
    b[5] = 0  # one channel keeps some windows: they are gathered
    attributes = dict(pads=pads, window=2)
    expected_y, expected_counters = reference(x, w, params, b, **attributes)
    y, counters = run_qlinear(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, params, b, channels_last=1,
                              **attributes)
    np.testing.assert_array_equal(y, expected_y.transpose(0, 2, 3, 1))
    assert_counters_match(counters, expected_counters)
    assert counters[6] == expected_counters[6] > 0  # kept channels computed alone: gathered


def test_channels_last_inputs_of_the_wrong_shape_are_refused():
    x, w, b, params = random_layer(np.random.default_rng(0), np.uint8, 8, 16, 3, 6, 6)
    with pytest.raises(Exception, match=r"node 'q': input x must be 4-D \[N, H, W, C\] \(channels_last = 1\)"):
        run_qlinear(np.zeros((1, 6, 6), np.uint8), w, params, b, pads=[1, 1, 1, 1], channels_last=1)
    with pytest.raises(Exception, match="node 'q': input X has 6 channels but W"):  # an NCHW x
        run_qlinear(x, w, params, b, pads=[1, 1, 1, 1], channels_last=1)


def test_shape_inference_types_a_channels_last_output_nhwc():
    x, w, b, params = random_layer(np.random.default_rng(0), np.uint8, 8, 24, 3, 10, 12)
    model = qlinear_model(w, params, b, pads=[1, 1, 1, 1], strides=[2, 2], channels_last=1)
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.UINT8, [2, 10, 12, 8]))
    del model.graph.output[:]
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    y = next(v for v in inferred.graph.value_info if v.name == "Y")
    assert [d.dim_value for d in y.type.tensor_type.shape.dim] == [2, 5, 6, 24]


def test_int8_output_and_extreme_zero_points_on_every_path(int8_kernel_path):
    """Y of the other type than x, y_zero_point at the type's maximum (every output is the clamp value),
    and accumulators beyond 2**24, where the int32 -> float32 conversion rounds."""
    rng = np.random.default_rng(7)
    x, w, b, params = random_layer(rng, np.uint8, 600, 20, 3, 6, 6, bias_spread=1)
    w = (np.abs(w) * np.where(np.arange(20) % 2, 1, -1).reshape(-1, 1, 1, 1)).astype(np.int8)  # sums of one sign
    params.update(x_scale=np.float32(0.02), x_zero_point=np.uint8(0), w_scale=np.float32(1e-5),
                  y_scale=np.float32(0.1))
    for y_zero_point in (np.int8(-128), np.int8(127), np.uint8(255), np.uint8(3)):
        params["y_zero_point"] = y_zero_point
        y, counters = run_qlinear(x, w, params, b, pads=[1, 1, 1, 1], window=2)
        expected_y, expected_counters = reference(x, w, params, b, pads=[1, 1, 1, 1], window=2)
        assert y.dtype == y_zero_point.dtype
        np.testing.assert_array_equal(y, expected_y)
        assert_counters_match(counters, expected_counters)
    acc = rq.accumulate(x, 0, w, b, rq.ConvAttributes(pads=(1, 1, 1, 1)))
    assert np.abs(acc).max() > 2**24


def test_ties_round_to_even_on_every_path(int8_kernel_path):
    """s = 0.5 puts every odd acc on a tie (k + 0.5): each path and onnxruntime round it to even."""
    rng = np.random.default_rng(9)
    x, w, b, params = random_layer(rng, np.uint8, 8, 20, 3, 8, 30, bias_spread=200)
    w = (w // 16).astype(np.int8)  # small sums, mostly within the output range
    params.update(x_scale=np.float32(1), x_zero_point=np.uint8(128), w_scale=np.float32(0.5), y_scale=np.float32(1),
                  y_zero_point=np.uint8(0))
    for window in (1, 2):
        ours, _ = run_qlinear(x, w, params, b, window=window, pads=[1, 1, 1, 1])
        expected, _ = reference(x, w, params, b, window=window, pads=[1, 1, 1, 1])
        np.testing.assert_array_equal(ours, expected)
    theirs = onnxruntime_all(qlinear_model(w, params, b, op_type="QLinearConv", pads=[1, 1, 1, 1]), x)
    np.testing.assert_array_equal(run_qlinear(x, w, params, b, window=1, pads=[1, 1, 1, 1])[0], theirs)
    acc = rq.accumulate(x, 128, w, b, rq.ConvAttributes(pads=(1, 1, 1, 1)))
    assert ((acc % 2 == 1) & (acc > 0) & (acc < 500)).sum() > 100  # many ties inside the range


def test_a_margin_predicts_only_what_its_real_threshold_allows():
    """The integer thresholds of the reference: margin 0 is the clamp value; a margin m predicts a sample
    exactly when acc * x_scale * w_scale <= -m (to a double rounding)."""
    scales = rq.output_scales(np.float32(0.02), np.float32(0.01), np.float32(0.1), 1)
    zero = rq.zero_thresholds(np.float32(0.02), np.float32(0.01), scales, 0, np.uint8, 0.0)[0]
    assert np.float32(zero) * scales[0] <= 0.5 < np.float32(zero + 1) * scales[0]
    assert rq.zero_thresholds(np.float32(0.02), np.float32(0.01), scales, 255, np.uint8, 0.0)[0] == rq.INT32_MAX
    margin = rq.zero_thresholds(np.float32(0.02), np.float32(0.01), scales, 0, np.uint8, 1.0)[0]
    product = float(np.float32(0.02)) * float(np.float32(0.01))  # the float32 scales, exactly
    assert margin * product <= -1.0 < (margin + 1) * product
    assert margin == -5001  # the float32 scales' product is a little under 2e-4


def test_the_result_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(3)
    x, w, b, params = random_layer(rng, np.int8, 32, 80, 3, 17, 15, batch=2)
    one = run_qlinear(x, w, params, b, threads=1, pads=[1, 1, 1, 1], window=3, pattern="checkerboard")
    two = run_qlinear(x, w, params, b, threads=2, pads=[1, 1, 1, 1], window=3, pattern="checkerboard")
    for a, b_ in zip(one, two):
        np.testing.assert_array_equal(a, b_)


def test_one_session_shared_by_threads_gives_each_its_result():
    """Each calling thread keeps its own input copy between calls: concurrent runs do not mix."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(4)
    layers = [random_layer(rng, np.uint8, 24, 40, 3, 15, 15 + i) for i in range(4)]
    _, w, b, params = layers[0]
    session = onnxpred.session(qlinear_model(w, params, b, pads=[1, 1, 1, 1], window=2), intra_op_num_threads=2)
    inputs = [layer[0] for layer in layers] * 4
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda x: session.run(None, {"x": x})[0], inputs))
    for x, y in zip(inputs, results):
        np.testing.assert_array_equal(y, reference(x, w, params, b, pads=[1, 1, 1, 1], window=2)[0])


# --- Window 1 against onnxruntime's int8 convolution ---------------------------------------------------


def onnxruntime_all(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]


@pytest.mark.parametrize("x_type", [np.uint8, np.int8])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_window_1_equals_onnxruntimes_qlinearconv(int8_kernel_path, x_type, per_channel):
    """Y = max(QLinearConv, y_zero_point) bit for bit: the requantization is onnxruntime's."""
    rng = np.random.default_rng([per_channel, x_type == np.int8])
    for in_channels, kernel, conv in ((24, 3, dict(pads=[1, 1, 1, 1])), (40, 3, dict(strides=[2, 2])),
                                      (600, 1, {}), (3, 3, dict(pads=[1, 1, 1, 1]))):
        x, w, b, params = random_layer(rng, x_type, in_channels, 36, kernel, 9, 10, per_channel=per_channel,
                                       bias_spread=20000)
        ours, _ = run_qlinear(x, w, params, b, window=1, **conv)
        theirs = onnxruntime_all(qlinear_model(w, params, b, x_type=x_type, op_type="QLinearConv", **conv), x)
        np.testing.assert_array_equal(ours, np.maximum(theirs, params["y_zero_point"]))


def qdq_conv_model(w: np.ndarray, params: dict, b: np.ndarray, *, relu: bool, x_type) -> onnx.ModelProto:
    """What onnxruntime's quantizer writes: DequantizeLinear(x), DequantizeLinear(w) (per channel, axis 0),
    DequantizeLinear(B) at scale x_scale * w_scale, Conv (pads 1), [Relu,] QuantizeLinear."""
    w_scale = np.asarray(params["w_scale"])
    axis = {"axis": 0} if w_scale.ndim else {}
    initializers = [numpy_helper.from_array(np.asarray(value), name) for name, value in (
        ("x_scale", params["x_scale"]), ("x_zero_point", params["x_zero_point"]), ("w", w), ("w_scale", w_scale),
        ("w_zero_point", np.zeros(w_scale.shape, np.int8)), ("B", b),
        ("b_scale", (np.float32(params["x_scale"]) * w_scale).astype(np.float32)),
        ("b_zero_point", np.zeros(w_scale.shape, np.int32)), ("y_scale", params["y_scale"]),
        ("y_zero_point", params["y_zero_point"]))]
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zero_point"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero_point"], ["wf"], **axis),
             helper.make_node("DequantizeLinear", ["B", "b_scale", "b_zero_point"], ["bf"], **axis),
             helper.make_node("Conv", ["xf", "wf", "bf"], ["conv"], pads=[1, 1, 1, 1])]
    if relu:
        nodes.append(helper.make_node("Relu", ["conv"], ["relu"]))
    nodes.append(helper.make_node("QuantizeLinear", ["relu" if relu else "conv", "y_scale", "y_zero_point"], ["Y"]))
    element = ELEMENT_TYPES[x_type]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", element, None)],
                              [helper.make_tensor_value_info("Y", element, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("x_type", [np.uint8, np.int8])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
@pytest.mark.parametrize("form", ["Relu", "no activation, zero point at the minimum", "Relu, zero point above it"])
def test_window_1_equals_the_quantized_conv_onnxruntime_runs(x_type, per_channel, form):
    """DQ -> Conv -> (Relu) -> Q at level ALL. Where onnxruntime fuses it into its integer QLinearConv
    (uint8 activations whose y_zero_point is the type's minimum) the op equals it bit for bit; where it
    runs the convolution in float32 (int8 activations; a Relu kept because y_zero_point is above the
    minimum) a float sum near a rounding tie may land on the other side: at most 1 apart, rarely."""
    rng = np.random.default_rng([per_channel, x_type == np.int8, len(form)])
    x, w, b, params = random_layer(rng, x_type, 32, 24, 3, 10, 10, per_channel=per_channel)
    params["y_zero_point"] = x_type(np.iinfo(x_type).min + (30 if form == "Relu, zero point above it" else 0))
    ours, _ = run_qlinear(x, w, params, b, window=1, pads=[1, 1, 1, 1])
    theirs = onnxruntime_all(qdq_conv_model(w, params, b, relu=form != "no activation, zero point at the minimum",
                                            x_type=x_type), x)
    difference = np.abs(ours.astype(np.int32) - theirs.astype(np.int32))
    if x_type == np.uint8 and form != "Relu, zero point above it":
        assert difference.max() == 0
    else:
        assert difference.max() <= 1 and (difference > 0).mean() < 0.001


# --- Bad inputs: a clear error naming the node, never a crash --------------------------------------------


def layer_for_errors(x_type=np.uint8, per_channel=True):
    rng = np.random.default_rng(11)
    return random_layer(rng, x_type, 4, 6, 3, 5, 5, per_channel=per_channel)


def test_weights_must_be_constant():
    x, w, b, params = layer_for_errors()
    model = qlinear_model(w, params, b, constant=("w_zero_point",))
    with pytest.raises(Exception, match="PredictiveQLinearConv node 'q': input w must be a constant initializer"):
        onnxpred.session(model)


def test_a_nonzero_weight_zero_point_is_refused_at_creation_or_run():
    x, w, b, params = layer_for_errors()
    nonzero = np.zeros(6, np.int8)
    nonzero[2] = 1
    with pytest.raises(Exception, match="node 'q': input w_zero_point must be all zero"):
        onnxpred.session(qlinear_model(w, params, b, w_zero_point=nonzero))
    session = onnxpred.session(qlinear_model(w, params, b, constant=("w",)))
    with pytest.raises(Exception, match="node 'q': input w_zero_point must be all zero"):
        session.run(None, {"x": x, "w_zero_point": nonzero})


def test_a_weight_scale_of_the_wrong_length_is_refused():
    x, w, b, params = layer_for_errors()
    params["w_scale"] = np.full(4, 0.01, np.float32)
    with pytest.raises(Exception, match="node 'q': input w_scale must have 1 or 6 values"):
        run_qlinear(x, w, params, b, w_zero_point=np.zeros(1, np.int8))


def test_x_zero_point_must_have_xs_type():
    x, w, b, params = layer_for_errors()
    params["x_zero_point"] = np.int8(3)
    with pytest.raises(Exception, match="node 'q': input x_zero_point must have x's type uint8, got int8"):
        run_qlinear(x, w, params, b)


def test_per_channel_y_scale_is_refused():
    x, w, b, params = layer_for_errors()
    params["y_scale"] = np.full(6, 0.1, np.float32)
    with pytest.raises(Exception, match=r"node 'q': input y_scale must be one value \(a scalar\) \(per-channel"):
        run_qlinear(x, w, params, b)


@pytest.mark.parametrize("name", ["x_scale", "y_scale"])
def test_missing_or_nonpositive_scales_are_refused(name):
    x, w, b, params = layer_for_errors()
    model = qlinear_model(w, params, b)
    index = op.QLINEAR_INPUT_NAMES.index(name)
    model.graph.node[0].input[index] = ""
    with pytest.raises(Exception, match=f"Node \\(q\\)'s input {index} is marked single but has an empty string"):
        onnxpred.session(model)  # onnxruntime's own check, before the kernel's
    params[name] = np.float32(0)
    with pytest.raises(Exception, match=f"node 'q': input {name} must be positive and finite"):
        run_qlinear(x, w, params, b)


def test_groups_are_refused_and_bias_must_fit():
    x, w, b, params = layer_for_errors()
    with pytest.raises(Exception, match="node 'q': attribute 'group' must be 1"):
        onnxpred.session(qlinear_model(w[:, :2], params, b, group=2))
    with pytest.raises(Exception, match=r"node 'q': input B must have shape \[6\]"):
        run_qlinear(x, w, params, b[:5])


def test_reductions_that_could_overflow_int32_are_refused():
    _, _, b, params = layer_for_errors()
    w = np.ones((6, rq.MAX_REDUCTION // 9 + 1, 3, 3), np.int8)
    with pytest.raises(Exception, match=r"node 'q': input w \[6, 7311, 3, 3\] sums more than 65793 products"):
        onnxpred.session(qlinear_model(w, params, b))
    with pytest.raises(ValueError, match="sums more than 65793"):
        reference(np.zeros((1, 7311, 3, 3), np.uint8), w, params, b)


def test_ill_typed_inputs_are_refused():
    x, w, b, params = layer_for_errors()
    with pytest.raises(Exception, match="x"):
        onnxpred.session(qlinear_model(w, params, b)).run(None, {"x": x.astype(np.int32)})
    with pytest.raises(Exception, match="B"):
        run_qlinear(x, w, params, b.astype(np.float32))


def test_quantization_parameters_fed_at_run_time_give_the_same_result():
    """Constant scales and zero points are resolved once at session creation; fed ones at every run."""
    rng = np.random.default_rng(5)
    x, w, b, params = random_layer(rng, np.int8, 20, 30, 3, 9, 9)
    expected_y, expected_counters = reference(x, w, params, b, pads=[1, 1, 1, 1], window=2, margin=0.25)
    model = qlinear_model(w, params, b, x_type=np.int8, constant=("w",), pads=[1, 1, 1, 1], window=2, margin=0.25)
    session = onnxpred.session(model)
    y, counters = session.run(None, {"x": x, "w_zero_point": np.zeros(30, np.int8)})
    np.testing.assert_array_equal(y, expected_y)
    assert_counters_match(counters, expected_counters)


@pytest.mark.parametrize("out_channels", [64, 90], ids=["one block", "a partial block"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels last"])
@pytest.mark.parametrize("window, height, width", [(3, 9, 24), (2, 9, 25), (4, 10, 22)])
def test_a_long_reduction_gathers_some_windows_and_computes_others(int8_kernel_path, window, height, width,
                                                                   channels_last, out_channels):
    """K = 2304: windows keeping few of a block's channels are gathered, those keeping most computed with
    the block (the cost model's break-even lies between), and at k = 3 and 4 a block's end vectors may be
    gathered while the tiles compute the span between; all bit for bit. The input's amplitude rises along
    the rows and the biases along the channels, as ordered channels' activity does, so windows and blocks
    keep from few channels to all; the windows' rest outputs, 1 to 12 with the edges clipped, fill the
    gather tiles' every pixel count. 90 channels leave a last block of 26 (a part-valid last vector).
    Channels last, the inner pixels read x in place and the border ones its copy."""
    rng = np.random.default_rng(11)
    in_channels = 256
    amplitude = np.linspace(0, 127, width)
    x = np.clip(128 + np.round(rng.standard_normal((1, in_channels, height, width)) * amplitude), 0, 255)
    x = x.astype(np.uint8)
    w = rng.integers(-127, 128, (out_channels, in_channels, 3, 3)).astype(np.int8)
    b = np.linspace(-200_000, 100_000, out_channels).astype(np.int32)
    params = quantized_params(rng, np.uint8, out_channels, per_channel=True, zero_point_at_min=True)
    params.update(x_scale=np.float32(0.02), x_zero_point=np.uint8(128), y_scale=np.float32(0.005))
    params["w_scale"] = np.full(out_channels, 1e-4, np.float32)
    attributes = dict(pads=[1, 1, 1, 1], window=window)
    expected_y, expected_counters = reference(x, w, params, b, **attributes)
    if channels_last:
        y, counters = run_qlinear(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, params, b, channels_last=1,
                                  **attributes)
        y = y.transpose(0, 3, 1, 2)
    else:
        y, counters = run_qlinear(x, w, params, b, **attributes)
    np.testing.assert_array_equal(y, expected_y)
    assert_counters_match(counters, expected_counters)
    executed, lower, upper = counters[6], expected_counters[6], expected_counters[5]
    assert lower < executed < upper  # some windows' blocks computed whole, some gathered


@pytest.mark.parametrize("window", [3, 4])
def test_a_windows_few_kept_channels_of_a_vector_are_gathered_and_the_rest_computed(int8_kernel_path, window):
    """Channels ordered by activity leave a window's kept channels mostly at one end of a block: here 16 to
    63 always, and of 0 to 15 only channel 3. With a reduction of 576 and windows whose 6 or 12 rest
    outputs fill whole tiles, the tiles compute the vectors of 16 to 63 and channel 3 is gathered (the
    16-lane tables gather block 0's one channel): the MACs executed are exactly the kept channels', and
    the outputs bit for bit the reference's."""
    rng = np.random.default_rng(window)
    in_channels, out_channels = 64, 64
    x = rng.integers(0, 256, (1, in_channels, 12, 12)).astype(np.uint8)
    w = rng.integers(-2, 3, (out_channels, in_channels, 3, 3)).astype(np.int8)  # |w . x| < 300_000
    active = np.r_[3, 16:64]
    b = np.full(out_channels, -1_000_000, np.int32)
    b[active] = 1_000_000
    params = quantized_params(rng, np.uint8, out_channels, per_channel=True, zero_point_at_min=True)
    attributes = dict(pads=[1, 1, 1, 1], window=window)
    y, counters = run_qlinear(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, params, b, channels_last=1,
                              **attributes)
    expected_y, expected_counters = reference(x, w, params, b, **attributes)
    np.testing.assert_array_equal(y.transpose(0, 3, 1, 2), expected_y)
    np.testing.assert_array_equal(counters, expected_counters)
    executed = op.COUNTER_NAMES.index("macs_executed")
    assert counters[executed] < counters[op.COUNTER_NAMES.index("macs_dense")]
