"""Convs the rewriter must leave alone, each with its reason."""

from __future__ import annotations

import numpy as np
from onnx import helper
from rewriter_graphs import GraphBuilder, check_rewrite, op_counts, predictive_nodes


def reasons(summary) -> dict[str, str]:
    return {layer.name: layer.reason for layer in summary.left_alone}


def test_conv_output_with_two_consumers():
    b = GraphBuilder()
    c = b.conv(b.input("X", [1, 4, 8, 8]), (8, 4, 3, 3), name="conv")
    b.output(b.node("Relu", [c], ["Y"]))
    b.output(b.node("Sigmoid", [c], ["S"]))
    _, summary = check_rewrite(b.model(), rewritten=0, left=1)
    assert reasons(summary) == {"conv": "Conv output has 2 consumers"}


def test_conv_output_that_is_a_graph_output():
    b = GraphBuilder()
    c = b.conv(b.input("X", [1, 4, 8, 8]), (8, 4, 3, 3), name="conv")
    b.output(b.node("Relu", [c], ["Y"]))
    b.output(c)
    _, summary = check_rewrite(b.model(), rewritten=0, left=1)
    assert reasons(summary) == {"conv": "Conv output is a graph output"}


def test_add_output_with_two_consumers():
    b = GraphBuilder()
    x, z = b.input("X", [1, 4, 8, 8]), b.input("Z", [1, 8, 8, 8])
    added = b.node("Add", [b.conv(x, (8, 4, 3, 3), name="conv"), z])
    b.output(b.node("Relu", [added], ["Y"]))
    b.output(b.node("Sigmoid", [added], ["S"]))
    _, summary = check_rewrite(b.model(), rewritten=0, left=1)
    assert reasons(summary) == {"conv": "Add output has 2 consumers"}


def test_no_activation_after_the_conv():
    b = GraphBuilder()
    b.output(b.node("Sigmoid", [b.conv(b.input("X", [1, 4, 8, 8]), (8, 4, 3, 3), name="conv")], ["Y"]))
    b.output(b.conv(b.input("X2", [1, 4, 8, 8]), (8, 4, 3, 3), name="last"))
    _, summary = check_rewrite(b.model(), rewritten=0, left=2)
    assert reasons(summary) == {
        "conv": "no activation after it: Conv output feeds Sigmoid, not Relu, Clip or Add",
        "last": "Conv output is a graph output",
    }


def test_add_not_followed_by_an_activation():
    b = GraphBuilder()
    x, z = b.input("X", [1, 4, 8, 8]), b.input("Z", [1, 8, 8, 8])
    b.output(b.node("Sigmoid", [b.node("Add", [b.conv(x, (8, 4, 3, 3), name="conv"), z])], ["Y"]))
    _, summary = check_rewrite(b.model(), rewritten=0, left=1)
    assert reasons(summary) == {"conv": "no activation after it: Add output feeds Sigmoid, not Relu or Clip"}


def test_dynamic_weights_and_bias():
    b = GraphBuilder()
    x = b.input("X", [1, 4, 8, 8])
    w = b.input("W_in", [8, 4, 3, 3])
    b_in = b.input("B_in", [8])
    y1 = b.node("Relu", [b.node("Conv", [x, w], name="dynamic_w", pads=[1, 1, 1, 1])], ["Y1"])
    y2 = b.node("Relu", [b.node("Conv", [x, b.weights("W", (8, 4, 3, 3)), b_in], name="dynamic_b", pads=[1, 1, 1, 1])], ["Y2"])
    b.output(y1)
    b.output(y2)
    feeds = {"X": np.ones((1, 4, 8, 8), np.float32), "W_in": np.ones((8, 4, 3, 3), np.float32),
             "B_in": np.ones(8, np.float32)}
    _, summary = check_rewrite(b.model(), rewritten=0, left=2, feeds=feeds)
    assert reasons(summary) == {"dynamic_w": "dynamic weights (W is not a constant)",
                                "dynamic_b": "dynamic bias (B is not a constant)"}


def test_initializer_that_is_also_a_graph_input_is_not_constant():
    b = GraphBuilder()
    b.output(b.node("Relu", [b.conv(b.input("X", [1, 4, 8, 8]), (8, 4, 3, 3), bias=False, name="conv")], ["Y"]))
    model = b.model()
    model.graph.input.append(helper.make_tensor_value_info("W1", 1, [8, 4, 3, 3]))  # overridable default
    result, summary = check_rewrite(model, rewritten=0, left=1, feeds={"X": np.ones((1, 4, 8, 8), np.float32)})
    assert reasons(summary) == {"conv": "dynamic weights (W is not a constant)"}
    assert [i.name for i in result.graph.input] == ["X", "W1"]  # the model's interface is kept


def test_weights_from_a_constant_node_become_an_initializer():
    b = GraphBuilder()
    w = b.node("Constant", [], ["Wc"], value=helper.make_tensor("v", 1, [8, 4, 3, 3], np.ones(288)))
    b.output(b.node("Relu", [b.node("Conv", [b.input("X", [1, 4, 8, 8]), w], name="conv", pads=[1, 1, 1, 1])], ["Y"]))
    model, _ = check_rewrite(b.model(), rewritten=1)
    assert op_counts(model) == {"PredictiveConv": 1}
    assert predictive_nodes(model)[0].input[1] in {t.name for t in model.graph.initializer}


def test_3d_and_1d_convs():
    b = GraphBuilder()
    b.output(b.node("Relu", [b.conv(b.input("X3", [1, 2, 4, 4, 4]), (4, 2, 3, 3, 3), name="conv3d")], ["Y3"]))
    b.output(b.node("Relu", [b.conv(b.input("X1", [1, 2, 8]), (4, 2, 3), name="conv1d")], ["Y1"]))
    _, summary = check_rewrite(b.model(), rewritten=0, left=2)
    assert reasons(summary) == {"conv3d": "3-D conv (the ops are 2-D)", "conv1d": "1-D conv (the ops are 2-D)"}


def test_two_convs_into_one_residual_add_fuse_the_larger():
    """ResNet's downsampling block: the 3x3 conv and the 1x1 shortcut meet at the Add."""
    b = GraphBuilder()
    x = b.input("X", [1, 4, 8, 8])
    shortcut = b.conv(x, (8, 4, 1, 1), name="shortcut")
    main = b.conv(x, (8, 4, 3, 3), name="main")
    b.output(b.node("Relu", [b.node("Add", [shortcut, main])], ["Y"]))
    model, summary = check_rewrite(b.model(), rewritten=1, left=1)
    assert [layer.name for layer in summary.rewritten] == ["main"]
    assert reasons(summary) == {"shortcut": "its Add->Relu is fused into 'main' (one conv per Add: the one with most MACs)"}
    assert op_counts(model) == {"Conv": 1, "PredictiveConv": 1}
