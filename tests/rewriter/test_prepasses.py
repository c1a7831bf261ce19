"""Pre-passes: auto_pad resolution, BatchNormalization and Pad folding."""

from __future__ import annotations

import numpy as np
import pytest
from rewriter_graphs import GraphBuilder, attributes, check_rewrite, op_counts, predictive_nodes

from onnxpred.rewriter.passes.resolve_auto_pad import explicit_pads


def single_layer(x_shape=(1, 4, 9, 9), w_shape=(8, 4, 3, 3), opset=17, before=None, after_conv=None, **conv_attrs):
    """X → [before] → Conv → [after_conv] → Relu → Y."""
    b = GraphBuilder(opset)
    x = b.input("X", list(x_shape))
    x = before(b, x) if before else x
    c = b.conv(x, w_shape, name="conv", **conv_attrs)
    c = after_conv(b, c) if after_conv else c
    b.output(b.node("Relu", [c], ["Y"]))
    return b.model()


@pytest.mark.parametrize(
    "auto_pad, strides, pads",
    [("SAME_UPPER", [2, 2], [0, 0, 1, 1]), ("SAME_LOWER", [2, 2], [1, 1, 0, 0]), ("VALID", [1, 1], [0, 0, 0, 0]),
     ("SAME_UPPER", [1, 1], [1, 1, 1, 1])],
)
def test_auto_pad_becomes_explicit_pads(auto_pad, strides, pads):
    # 10x10 input, 3x3 kernel, stride 2: out 5, total padding 1, on the end (UPPER) or the start (LOWER).
    model = single_layer((1, 4, 10, 10), auto_pad=auto_pad, strides=strides, pads=None)  # None: no attribute
    result, summary = check_rewrite(model, rewritten=1)
    attrs = attributes(predictive_nodes(result)[0])
    assert attrs["pads"] == pads and "auto_pad" not in attrs
    assert summary.prepasses["auto_pad resolved"] == [f"conv: auto_pad {auto_pad} -> pads {pads}"]


def test_explicit_pads_with_dilation():
    # in 7, k 3, d 2, s 1: out 7, total (7-1) + 4 + 1 - 7 = 4.
    assert explicit_pads("SAME_UPPER", [7], [3], [1], [2]) == [2, 2]
    assert explicit_pads("SAME_LOWER", [8], [2], [1], [1]) == [1, 0]
    assert explicit_pads("SAME_UPPER", ["H"], [3], [1], [1]) is None


def test_auto_pad_on_a_dynamic_spatial_size_is_left_alone():
    model = single_layer(("N", 4, "H", "W"), auto_pad="SAME_UPPER", pads=None)
    _, summary = check_rewrite(model, rewritten=0, left=1, feeds={"X": np.ones((1, 4, 6, 6), np.float32)})
    assert summary.left_alone[0].reason == "auto_pad SAME_UPPER on an input of unknown spatial size"


def batch_norm(b, c, channels=8):
    rng = np.random.default_rng(3)
    params = [b.constant(name, values) for name, values in (
        ("gamma", rng.uniform(0.5, 2, channels)), ("beta", rng.standard_normal(channels)),
        ("mean", rng.standard_normal(channels)), ("var", rng.uniform(0.5, 2, channels)))]
    return b.node("BatchNormalization", [c, *params], epsilon=1e-3)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_batch_norm_is_folded_into_the_conv(bias):
    b = GraphBuilder()
    c = b.conv(b.input("X", [1, 4, 8, 8]), (8, 4, 3, 3), bias=bias, name="conv")
    b.output(b.node("Relu", [batch_norm(b, c)], ["Y"]))
    model, summary = check_rewrite(b.model(), rewritten=1)
    assert op_counts(model) == {"PredictiveConv": 1}
    assert summary.prepasses == {"BatchNormalization folded": ["batchnormalization1 folded into conv"]}
    assert len(predictive_nodes(model)[0].input) == 3  # the folded bias


def test_batch_norm_of_a_shared_conv_output_is_not_folded():
    b = GraphBuilder()
    c = b.conv(b.input("X", [1, 4, 8, 8]), (8, 4, 3, 3), name="conv")
    b.output(b.node("Relu", [batch_norm(b, c)], ["Y"]))
    b.output(b.node("Sigmoid", [c], ["S"]))
    model, summary = check_rewrite(b.model(), rewritten=0, left=1)
    assert op_counts(model)["BatchNormalization"] == 1 and not summary.prepasses


def pad(pads, *, mode="constant", value=None, axes=None):
    def build(b, x):
        inputs = [x, b.constant("pads", pads, np.int64)]
        inputs.append("" if value is None else b.constant("value", value))
        if axes is not None:
            inputs.append(b.constant("axes", axes, np.int64))
        while inputs[-1] == "":
            inputs.pop()
        return b.node("Pad", inputs, mode=mode)
    return build


@pytest.mark.parametrize(
    "before, own_pads, folded_pads",
    [
        (pad([0, 0, 0, 1, 0, 0, 1, 1]), [0, 0, 0, 0], [0, 1, 1, 1]),    # TF "SAME" at stride 2: extra at the end
        (pad([0, 0, 1, 1, 0, 0, 1, 1], value=0.0), [1, 1, 1, 1], [2, 2, 2, 2]),  # adds to the Conv's own pads
        (pad([1, 2, 1, 2], axes=[2, 3]), [0, 0, 0, 0], [1, 2, 1, 2]),  # opset 18 axes
    ],
    ids=["tf-same", "explicit-zero", "axes"],
)
def test_zero_pad_is_folded_into_the_conv(before, own_pads, folded_pads):
    result, summary = check_rewrite(single_layer(before=before, opset=18, pads=own_pads), rewritten=1)
    assert op_counts(result) == {"PredictiveConv": 1}
    assert attributes(predictive_nodes(result)[0])["pads"] == folded_pads
    assert summary.prepasses["Pad folded"] == ["pad1 folded into conv"]
    assert summary.rewritten[0].input_shape == (1, 4, 9, 9)


def test_pad_with_attributes_in_opset_10_is_folded():
    model = single_layer(before=lambda b, x: b.node("Pad", [x], pads=[0, 0, 1, 1, 0, 0, 1, 1]), opset=10, pads=[0, 0, 0, 0])
    result, _ = check_rewrite(model, rewritten=1)
    assert attributes(predictive_nodes(result)[0])["pads"] == [1, 1, 1, 1]


@pytest.mark.parametrize(
    "before, in_channels",
    [(pad([0, 0, 1, 1, 0, 0, 1, 1], value=1.0), 4), (pad([0, 0, 1, 1, 0, 0, 1, 1], mode="reflect"), 4),
     (pad([0, 1, 1, 1, 0, 0, 1, 1]), 5), (pad([0, 0, -1, 0, 0, 0, 0, 0]), 4)],
    ids=["non-zero-value", "reflect", "channel-pad", "negative"],
)
def test_other_pads_stay(before, in_channels):
    result, summary = check_rewrite(single_layer(before=before, w_shape=(8, in_channels, 3, 3)), rewritten=1)
    assert op_counts(result)["Pad"] == 1 and "Pad folded" not in summary.prepasses
