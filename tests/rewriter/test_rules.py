"""Each pattern the rewriter replaces, on small hand-built graphs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from rewriter_graphs import GraphBuilder, attributes, check_rewrite, op_counts, predictive_nodes


def conv_then(activation, *, w_shape=(8, 4, 3, 3), bias=True, opset=17, x_shape=(1, 4, 8, 8), **conv_attrs):
    """X → Conv → activation(builder, tensor) → Y."""
    b = GraphBuilder(opset)
    x = b.input("X", list(x_shape))
    y = activation(b, b.conv(x, w_shape, bias=bias, name="conv", **conv_attrs))
    b.output(y)
    return b.model()


def relu(b, t):
    return b.node("Relu", [t], ["Y"])


def clip_inputs(low, high):
    """Clip with opset-11+ bound inputs (None: omitted)."""
    def build(b, t):
        inputs = [t, "" if low is None else b.constant("clip_min", low), "" if high is None else b.constant("clip_max", high)]
        while inputs[-1] == "":
            inputs.pop()
        return b.node("Clip", inputs, ["Y"])
    return build


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_conv_relu(bias):
    model, summary = check_rewrite(conv_then(relu, bias=bias), rewritten=1, window=3)
    node, = predictive_nodes(model)
    assert node.name == "conv" and list(node.output) == ["Y"]
    assert len(node.input) == (3 if bias else 2)
    attrs = attributes(node)
    assert attrs["activation"] == "Relu" and attrs["window"] == 3 and attrs["pads"] == [1, 1, 1, 1]
    assert attrs["kernel_shape"] == [3, 3] and "clip_max" not in attrs
    assert op_counts(model) == {"PredictiveConv": 1}
    layer, = summary.rewritten
    assert (layer.pattern, layer.input_shape, layer.output_shape) == ("Conv->Relu", (1, 4, 8, 8), (1, 8, 8, 8))
    assert layer.macs == 8 * 8 * 8 * 4 * 3 * 3


@pytest.mark.parametrize("group, w_shape", [(2, (8, 2, 3, 3)), (4, (4, 1, 3, 3))], ids=["grouped", "depthwise"])
def test_grouped_and_depthwise_convs(group, w_shape):
    model, summary = check_rewrite(conv_then(relu, w_shape=w_shape, group=group), rewritten=1)
    assert attributes(predictive_nodes(model)[0])["group"] == group


def test_strided_dilated_conv_keeps_its_geometry():
    model, _ = check_rewrite(
        conv_then(relu, w_shape=(6, 4, 3, 3), x_shape=(2, 4, 11, 9), strides=[2, 1], dilations=[1, 2], pads=[1, 0, 2, 1]),
        rewritten=1,
    )
    attrs = attributes(predictive_nodes(model)[0])
    assert (attrs["strides"], attrs["dilations"], attrs["pads"]) == ([2, 1], [1, 2], [1, 0, 2, 1])


@pytest.mark.parametrize("high", [6.0, None], ids=["relu6", "no-max"])
def test_conv_clip(high):
    model, summary = check_rewrite(conv_then(clip_inputs(0.0, high)), rewritten=1)
    attrs = attributes(predictive_nodes(model)[0])
    assert attrs["activation"] == "Clip" and attrs.get("clip_max") == high
    assert summary.rewritten[0].pattern == "Conv->Clip"
    assert not model.graph.initializer or all(t.name not in ("clip_min", "clip_max") for t in model.graph.initializer)


def test_conv_clip_bounds_from_constant_nodes():
    def clip(b, t):
        low = b.node("Constant", [], ["low"], value=helper.make_tensor("v", TensorProto.FLOAT, [], [0.0]))
        high = b.node("Constant", [], ["high"], value=helper.make_tensor("v", TensorProto.FLOAT, [], [6.0]))
        return b.node("Clip", [t, low, high], ["Y"])

    model, _ = check_rewrite(conv_then(clip), rewritten=1)
    assert op_counts(model) == {"PredictiveConv": 1}  # the bound Constants went with the Clip


def test_clip_6_attributes_in_opset_10():
    model, _ = check_rewrite(conv_then(lambda b, t: b.node("Clip", [t], ["Y"], min=0.0, max=6.0), opset=10), rewritten=1)
    assert attributes(predictive_nodes(model)[0])["clip_max"] == 6.0


@pytest.mark.parametrize(
    "activation, opset, reason",
    [
        (clip_inputs(-1.0, 6.0), 17, "Clip min is -1, not 0"),
        (clip_inputs(0.5, 6.0), 17, "Clip min is 0.5, not 0"),
        (clip_inputs(None, 6.0), 17, "Clip has no lower bound"),
        (clip_inputs(0.0, 0.0), 17, "Clip max is 0, not > 0"),
        (lambda b, t: b.node("Clip", [t], ["Y"], max=6.0), 10, "Clip has no lower bound"),
    ],
    ids=["min-1", "min-0.5", "no-min", "max-0", "clip6-no-min"],
)
def test_clip_that_is_not_zero_exactly_below_zero_is_left_alone(activation, opset, reason):
    _, summary = check_rewrite(conv_then(activation, opset=opset), rewritten=0, left=1)
    assert summary.left_alone[0].reason == reason


def test_clip_with_a_dynamic_min_is_left_alone():
    model = conv_then(lambda b, t: b.node("Clip", [t, b.input("low", []), b.constant("high", 6.0)], ["Y"]))
    feeds = {"X": np.ones((1, 4, 8, 8), np.float32), "low": np.array(0, np.float32)}
    _, summary = check_rewrite(model, rewritten=0, left=1, feeds=feeds)
    assert summary.left_alone[0].reason == "Clip min is not a constant scalar"


def residual_block(order, activation=relu, z_shape=(1, 8, 8, 8)):
    b = GraphBuilder()
    x = b.input("X", [1, 4, 8, 8])
    z = b.input("Z", list(z_shape))
    c = b.conv(x, (8, 4, 3, 3), name="conv")
    added = b.node("Add", [c, z] if order == "conv-first" else [z, c])
    b.output(activation(b, added))
    return b.model()


@pytest.mark.parametrize("order", ["conv-first", "residual-first"])
def test_conv_add_relu_in_either_operand_order(order):
    model, summary = check_rewrite(residual_block(order), rewritten=1)
    node, = predictive_nodes(model)
    assert list(node.input)[3] == "Z" and summary.rewritten[0].pattern == "Conv->Add->Relu"
    assert op_counts(model) == {"PredictiveConv": 1}


def test_conv_add_clip():
    model, summary = check_rewrite(residual_block("conv-first", clip_inputs(0.0, 6.0)), rewritten=1)
    assert summary.rewritten[0].pattern == "Conv->Add->Clip"


def test_conv_add_without_bias_passes_an_empty_bias():
    b = GraphBuilder()
    x, z = b.input("X", [1, 4, 8, 8]), b.input("Z", [1, 8, 8, 8])
    b.output(b.node("Relu", [b.node("Add", [b.conv(x, (8, 4, 3, 3), bias=False), z])], ["Y"]))
    model, _ = check_rewrite(b.model(), rewritten=1)
    assert list(predictive_nodes(model)[0].input)[2:] == ["", "Z"]


def test_broadcast_residual_is_left_alone():
    _, summary = check_rewrite(residual_block("conv-first", z_shape=(1, 8, 1, 1)), rewritten=0, left=1)
    assert "residual shape 1x8x1x1 differs" in summary.left_alone[0].reason


def fused_conv(activation, params=None, *, residual=False):
    b = GraphBuilder()
    b.extra_opsets.append(helper.make_opsetid("com.microsoft", 1))
    x = b.input("X", [1, 4, 8, 8])
    inputs = [x, b.weights("W", (8, 4, 3, 3)), b.constant("B", np.full(8, 0.1))]
    if residual:
        inputs.append(b.input("Z", [1, 8, 8, 8]))
    attrs = dict(activation=activation, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    if params is not None:
        attrs["activation_params"] = params
    # onnx cannot infer FusedConv's output shape: declare it (strict checking requires one).
    b.output(b.node("FusedConv", inputs, ["Y"], name="fused", domain="com.microsoft", **attrs), [1, 8, 8, 8])
    return b.model()


@pytest.mark.parametrize(
    "activation, params, residual, pattern",
    [("Relu", None, False, "FusedConv->Relu"), ("Clip", [0.0, 6.0], False, "FusedConv->Clip"),
     ("Relu", None, True, "FusedConv->Add->Relu")],
)
def test_fused_conv(activation, params, residual, pattern):
    model, summary = check_rewrite(fused_conv(activation, params, residual=residual), rewritten=1)
    assert summary.rewritten[0].pattern == pattern
    assert op_counts(model) == {"PredictiveConv": 1}
    assert attributes(predictive_nodes(model)[0]).get("clip_max") == (params[1] if params else None)


@pytest.mark.parametrize(
    "activation, params, reason",
    [("Clip", [-1.0, 6.0], "Clip min is -1, not 0"), ("Sigmoid", None, "FusedConv activation Sigmoid is not Relu or Clip")],
)
def test_fused_conv_with_other_activation_is_left_alone(activation, params, reason):
    _, summary = check_rewrite(fused_conv(activation, params), rewritten=0, left=1)
    assert summary.left_alone[0].reason == reason
