"""The channels-last pass: int8 layers and the 8-bit MaxPools between them run NHWC with a Transpose only
where an NHWC tensor meets an NCHW reader, and the model computes what the NCHW rewrite computes, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper
from quantized_graphs import X_SHAPE, copied, float_model, initializer, pooled_float_model, quantize, set_initializer
from rewriter_graphs import GraphBuilder, op_counts

import onnxpred
from onnxpred import op
from onnxpred.rewriter.passes.channels_last import MICROSOFT_DOMAIN

pytest.importorskip("onnxruntime.quantization")


def pooled_model():
    """:func:`pooled_float_model` quantized: a pool between two int8 layers."""
    return quantize(pooled_float_model())


def outputs(model, x):
    return onnxpred.session(model).run(None, {"X": x})[0]


@pytest.mark.parametrize("window", [1, 2, 3])
def test_a_chain_runs_nhwc_between_two_transposes_and_computes_the_same(window):
    model = pooled_model()
    nchw = onnxpred.rewrite(model, window=window)
    nhwc, summary = onnxpred.rewrite_with_summary(model, window=window, channels_last=True)
    counts = op_counts(nhwc)
    assert counts["Transpose"] == 2 and counts["NhwcMaxPool"] == 1 and counts["MaxPool"] == 0, counts
    layers = [node for node in nhwc.graph.node if op.is_predictive_qlinear_conv(node)]
    assert len(layers) == 3 and all(op.node_attributes(node)["channels_last"] == 1 for node in layers)
    assert any(o.domain == MICROSOFT_DOMAIN for o in nhwc.opset_import)
    assert "channels-last edits" in summary.format_table()
    x = np.random.default_rng(window).standard_normal(X_SHAPE).astype(np.float32)
    np.testing.assert_array_equal(outputs(nhwc, x), outputs(nchw, x))
    if window == 1:
        np.testing.assert_array_equal(outputs(nhwc, x), outputs(model, x))


def test_rewriting_a_channels_last_model_again_changes_nothing():
    once = onnxpred.rewrite(pooled_model(), window=3, channels_last=True)
    twice = onnxpred.rewrite(once, window=3, channels_last=True)
    assert op_counts(twice) == op_counts(once)
    x = np.random.default_rng(0).standard_normal(X_SHAPE).astype(np.float32)
    np.testing.assert_array_equal(outputs(twice, x), outputs(once, x))


def test_a_tensor_with_an_nchw_reader_keeps_its_transpose():
    """conv0's output feeds conv1 (NHWC) and an Add (NCHW): one Transpose in, one for the Add, one out."""
    b = GraphBuilder()
    first = b.node("Relu", [b.conv(b.input("X", X_SHAPE), (4, 4, 3, 3), name="conv0")])
    second = b.node("Relu", [b.conv(first, (4, 4, 3, 3), name="conv1")])
    b.output(b.node("Add", [first, second], ["Y"]))
    model = quantize(b.model())
    nhwc = onnxpred.rewrite(model, window=3, channels_last=True)
    assert op_counts(nhwc)["Transpose"] == 3
    x = np.random.default_rng(0).standard_normal(X_SHAPE).astype(np.float32)
    np.testing.assert_array_equal(outputs(nhwc, x), outputs(onnxpred.rewrite(model, window=3), x))


def test_a_pool_whose_quantization_changes_stays_nchw():
    model = pooled_model()
    edited = copied(model)
    pool = next(node for node in edited.graph.node if node.op_type == "MaxPool")
    quantize_node = next(node for node in edited.graph.node if node.input and node.input[0] == pool.output[0])
    scale = quantize_node.input[1]
    edited.graph.initializer.append(initializer(edited, scale))
    edited.graph.initializer[-1].name = f"{scale}_pool"
    set_initializer(edited, f"{scale}_pool", 2 * numpy_helper.to_array(initializer(edited, scale)))
    quantize_node.input[1] = f"{scale}_pool"
    nhwc = onnxpred.rewrite(edited, window=3, channels_last=True)
    assert op_counts(nhwc)["NhwcMaxPool"] == 0 and op_counts(nhwc)["MaxPool"] == 1
    x = np.random.default_rng(1).standard_normal(X_SHAPE).astype(np.float32)
    np.testing.assert_array_equal(outputs(nhwc, x), outputs(onnxpred.rewrite(edited, window=3), x))


def test_a_float_model_is_left_as_it_was():
    model = float_model("Relu")
    assert op_counts(onnxpred.rewrite(model, window=3, channels_last=True))["Transpose"] == 0
