"""The quantized rules (rules/qdq_conv*.py, rules/qlinear_conv.py) on models quantized by onnxruntime's
quantize_static: what is replaced by PredictiveQLinearConv, how it is wired, and each case left alone
with its reason. Running the rewritten models is tests/quantized/test_rewrite_quantized.py's part."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from quantized_graphs import (add_scalar, conv_quantize, copied, dequantize_of, float_model, initializer,
                              insert_before_quantize, node, quantize, set_initializer)

import onnxpred
from onnxpred import op

pytest.importorskip("onnxruntime.quantization")


def rewrite(model, **options):
    result, summary = onnxpred.rewrite_with_summary(model, **options)
    onnx.checker.check_model(result, full_check=True)
    return result, summary


def quantized_nodes(model):
    return [n for n in model.graph.node if op.is_predictive_qlinear_conv(n)]


def reasons(summary) -> dict[str, str]:
    return {layer.name: layer.reason for layer in summary.left_alone}


def values(model, name):
    return numpy_helper.to_array(initializer(model, name))


@pytest.fixture(scope="module")
def relu_int8():
    """Two Conv→Relu layers, QDQ, per-channel int8 weights, uint8 activations: the quantizer drops the Relus."""
    return quantize(float_model("Relu"))


def test_qdq_conv_without_activation_becomes_predictive_qlinear_conv(relu_int8):
    assert not [n for n in relu_int8.graph.node if n.op_type == "Relu"]  # the quantizer's doing
    result, summary = rewrite(relu_int8, window=2)
    assert [(r.name, r.pattern) for r in summary.rewritten] == [("conv0", "DQ->Conv->Q"), ("conv1", "DQ->Conv->Q")]
    first = quantized_nodes(result)[0]
    quantize_node = conv_quantize(relu_int8, "conv0")
    x_dequantize = dequantize_of(relu_int8, 0, 0)
    w_dequantize = dequantize_of(relu_int8, 0, 1)
    assert list(first.input[:8]) == [*x_dequantize.input, *w_dequantize.input, *quantize_node.input[1:]]
    assert list(first.output) == list(quantize_node.output)
    assert values(result, first.input[8]).dtype == np.int32 and values(result, first.input[8]).shape == (4,)
    attrs = op.node_attributes(first)
    assert attrs["window"] == 2 and attrs["pads"] == (1, 1, 1, 1) and attrs["kernel_shape"] == (3, 3)
    assert not [n for n in result.graph.node if n.op_type == "Conv"]
    # Every DequantizeLinear went with its only reader but the one before the graph's output.
    assert sum(n.op_type == "DequantizeLinear" for n in result.graph.node) == 1


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
@pytest.mark.parametrize("activations", [np.uint8, np.int8], ids=["uint8", "int8"])
def test_weight_and_activation_quantizations_the_op_takes(per_channel, activations):
    model = quantize(float_model("Relu", layers=1), per_channel=per_channel, activations=activations)
    result, summary = rewrite(model)
    assert summary.layers_rewritten == 1, summary.format_table()
    new = quantized_nodes(result)[0]
    assert values(result, new.input[4]).shape == ((4,) if per_channel else ())
    y_zero_point = values(result, new.input[7])
    assert y_zero_point.dtype == activations and y_zero_point == np.iinfo(activations).min


def test_explicit_relu_before_quantize_at_any_zero_point(relu_int8):
    model = copied(relu_int8)
    insert_before_quantize(model, "conv0", "Relu")
    set_initializer(model, conv_quantize(model, "conv0").input[2], 7)  # Relu clamps at the zero point itself
    result, summary = rewrite(model)
    assert [r.pattern for r in summary.rewritten] == ["DQ->Conv->Relu->Q", "DQ->Conv->Q"]
    assert not [n for n in result.graph.node if n.op_type == "Relu"]


@pytest.mark.parametrize("clip_max, rewritten", [(1e6, True), (None, True), (0.5, False)],
                         ids=["wide", "no-max", "narrow"])
def test_explicit_clip_only_when_its_max_never_bites(relu_int8, clip_max, rewritten):
    model = copied(relu_int8)
    bounds = [add_scalar(model, "clip_lo", 0.0)] + ([add_scalar(model, "clip_hi", clip_max)] if clip_max else [])
    insert_before_quantize(model, "conv0", "Clip", *bounds)
    result, summary = rewrite(model)
    if rewritten:
        assert summary.rewritten[0].pattern == "DQ->Conv->Clip->Q"
    else:
        largest = 255 * float(values(model, conv_quantize(model, "conv0").input[1]))
        assert reasons(summary) == {"conv0": f"Clip max 0.5 is below the largest value the output represents "
                                             f"({largest:.4g}); PredictiveQLinearConv has no upper clamp"}


def test_clip_min_other_than_zero(relu_int8):
    model = copied(relu_int8)
    bounds = add_scalar(model, "clip_lo", -1.0), add_scalar(model, "clip_hi", 1e6)
    insert_before_quantize(model, "conv0", "Clip", *bounds)
    _, summary = rewrite(model)
    assert reasons(summary) == {"conv0": "Clip min is -1, not 0"}


def test_zero_point_above_the_type_minimum_without_activation(relu_int8):
    model = copied(relu_int8)
    set_initializer(model, conv_quantize(model, "conv1").input[2], 3)
    _, summary = rewrite(model)
    assert reasons(summary) == {
        "conv1": "no activation: y_zero_point 3 is not uint8's minimum 0 (the output represents negative values)"}


def test_symmetric_int8_activations_keep_the_relu_after_a_signed_output():
    """ActivationSymmetric: Conv → Q(zero point 0) → DQ → Relu → Q; the Conv's own output is signed."""
    model = quantize(float_model("Relu", layers=1), activations=np.int8, symmetric=True)
    _, summary = rewrite(model)
    assert reasons(summary) == {
        "conv0": "no activation: y_zero_point 0 is not int8's minimum -128 (the output represents negative values)"}


def test_residual_add_is_left_alone_in_v1():
    model = quantize(float_model("Relu", residual=True, layers=1))
    _, summary = rewrite(model)
    assert reasons(summary)["conv0"].endswith(
        "; a residual Add->Relu follows, and PredictiveQLinearConv v1 has no residual input")


def test_scales_and_zero_points_must_be_constants(relu_int8):
    model = copied(relu_int8)
    scale = conv_quantize(model, "conv0").input[1]
    model.graph.input.append(helper.make_tensor_value_info(scale, onnx.TensorProto.FLOAT, []))  # overridable
    _, summary = rewrite(model)
    # The quantizer gives conv1's x_scale the same tensor.
    assert reasons(summary) == {"conv0": "y_scale is not a constant", "conv1": "x_scale is not a constant"}


def test_activations_quantized_per_channel(relu_int8):
    model = copied(relu_int8)
    x_dequantize = dequantize_of(model, 1, 0)
    scale = float(values(model, x_dequantize.input[1]))
    model.graph.initializer.append(numpy_helper.from_array(np.full(4, scale, np.float32), "x_scales"))
    x_dequantize.input[1] = "x_scales"
    _, summary = rewrite(model)
    assert reasons(summary) == {"conv1": "x_scale has 4 values, not one (quantized per channel)"}


def test_weights_with_a_zero_point(relu_int8):
    model = copied(relu_int8)
    w_dequantize = dequantize_of(model, 0, 1)
    set_initializer(model, w_dequantize.input[2], [0, 1, 0, 0])
    _, summary = rewrite(model)
    assert reasons(summary) == {"conv0": "w_zero_point is not all zero (PredictiveQLinearConv takes symmetric weights)"}


def test_weights_quantized_along_another_axis(relu_int8):
    model = copied(relu_int8)
    w_dequantize = dequantize_of(model, 0, 1)
    next(a for a in w_dequantize.attribute if a.name == "axis").i = 1
    _, summary = rewrite(model)
    assert reasons(summary) == {"conv0": "W is quantized along axis 1, not 0 (its output channels)"}


def test_uint8_weights():
    _, summary = rewrite(quantize(float_model("Relu", layers=1), weights=np.uint8, per_channel=False))
    assert reasons(summary) == {"conv0": "uint8 weights (PredictiveQLinearConv takes int8)"}


def test_bias_of_another_scale(relu_int8):
    model = copied(relu_int8)
    b_dequantize = dequantize_of(model, 0, 2)
    set_initializer(model, b_dequantize.input[1], values(model, b_dequantize.input[1]) * 2)
    _, summary = rewrite(model)
    assert reasons(summary) == {"conv0": "the bias scale is not x_scale * w_scale"}


def test_conv_output_read_twice(relu_int8):
    model = copied(relu_int8)
    conv_output = node(model, "Conv").output[0]
    model.graph.node.append(helper.make_node("Sigmoid", [conv_output], ["S"]))
    model.graph.output.append(helper.make_tensor_value_info("S", onnx.TensorProto.FLOAT, None))
    _, summary = rewrite(model)
    assert reasons(summary) == {"conv0": "Conv output has 2 consumers"}


def test_qlinear_conv_with_a_relu_like_output():
    model = quantize(float_model("Relu"), qoperator=True)
    result, summary = rewrite(model, window=3)
    # The quantizer's names for the QLinearConvs.
    assert [(r.name, r.pattern) for r in summary.rewritten] == [("conv0_quant", "QLinearConv"),
                                                                ("conv1_quant", "QLinearConv")]
    original, new = node(model, "QLinearConv"), quantized_nodes(result)[0]
    assert list(new.input) == list(original.input) and list(new.output) == list(original.output)


def test_qlinear_conv_whose_output_is_signed():
    model = quantize(float_model(None, layers=1), qoperator=True)
    zero_point = node(model, "QLinearConv").input[7]
    set_initializer(model, zero_point, 128)  # a linear layer's output, whatever the calibration found
    _, summary = rewrite(model)
    assert reasons(summary) == {"conv0_quant": "no activation: y_zero_point 128 is not uint8's minimum 0 "
                                               "(the output represents negative values)"}


def test_layer_selection_and_counters_work_on_quantized_layers(relu_int8):
    result, summary = rewrite(relu_int8, exclude=["conv1"], expose_counters=True)
    assert [r.name for r in summary.rewritten] == ["conv0"] and reasons(summary) == {"conv1": "excluded"}
    assert "conv0.counters" in [o.name for o in result.graph.output]
    assert list(quantized_nodes(result)[0].output) == [conv_quantize(relu_int8, "conv0").output[0], "conv0.counters"]


@pytest.mark.parametrize("group, kind", [(4, "depthwise"), (2, "grouped")])
def test_grouped_convs_stay_onnxruntimes_in_v1(group, kind):
    _, summary = rewrite(quantize(float_model("Relu", layers=1, group=group)))
    assert reasons(summary) == {"conv0": f"{kind} conv (group {group}; PredictiveQLinearConv v1 takes ungrouped convs)"}


def test_scales_must_be_positive(relu_int8):
    model = copied(relu_int8)
    set_initializer(model, conv_quantize(model, "conv1").input[1], 0.0)
    _, summary = rewrite(model)
    assert reasons(summary) == {"conv1": "y_scale is not positive and finite"}


def test_float_weights_on_a_dequantized_input_take_the_float_rules():
    model = float_model("Relu", layers=1)
    conv = node(model, "Conv")
    model.graph.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                                    numpy_helper.from_array(np.array(128, np.uint8), "z")])
    model.graph.node.insert(0, helper.make_node("QuantizeLinear", ["X", "s", "z"], ["Xq"]))
    model.graph.node.insert(1, helper.make_node("DequantizeLinear", ["Xq", "s", "z"], ["Xdq"]))
    conv.input[0] = "Xdq"
    result, summary = rewrite(model)
    assert [r.pattern for r in summary.rewritten] == ["Conv->Relu"]
    assert [n.op_type for n in result.graph.node if op.is_contract_op(n)] == [op.OP_TYPE]


def test_dequantized_weights_on_a_float_input(relu_int8):
    model = copied(relu_int8)
    node(model, "Conv").input[0] = "X"
    _, summary = rewrite(model)
    assert reasons(summary) == {"conv0": "X is float (not from a DequantizeLinear) while W is quantized"}
