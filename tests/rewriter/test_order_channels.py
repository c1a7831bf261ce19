"""Ordering the rewritten layers' output channels by activity: the model computes the same (int8 bit for
bit, float32 to rounding), the layer and its readers are permuted, and a layer whose channels reach
anything that is not channel-wise keeps its order, with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper
from quantized_graphs import X_SHAPE, float_model, pooled_float_model, quantize
from rewriter_graphs import GraphBuilder

import onnxpred
from onnxpred import op
from onnxpred.rewriter.passes.order_channels import OrderChannels

pytest.importorskip("onnxruntime.quantization")


ACTIVITY = {f"conv{i}": np.random.default_rng(i).random(8) for i in range(3)}
GRAPHS = {
    "float": pooled_float_model,
    "qdq": lambda: quantize(pooled_float_model()),
    "qdq, per-tensor weights": lambda: quantize(pooled_float_model(), per_channel=False),
    "qlinearconv": lambda: quantize(pooled_float_model(), qoperator=True),
}


def ordered_and_kept(summary) -> tuple[list[str], list[str]]:
    """The ordered layers, and the others with why."""
    return (summary.prepasses.get(OrderChannels.description, []),
            summary.prepasses.get(OrderChannels.kept_description, []))


def weights(model) -> dict[str, np.ndarray]:
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {node.name: initializers[node.input[1 if op.is_predictive_conv(node) else 3]]
            for node in model.graph.node if op.is_contract_op(node)}


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels last"])
@pytest.mark.parametrize("window", [1, 3])
@pytest.mark.parametrize("graph", GRAPHS)
def test_ordered_channels_compute_the_same(graph, window, channels_last):
    model = GRAPHS[graph]()
    plain = onnxpred.rewrite(model, window=window, channels_last=channels_last)
    before = weights(plain)
    names = sorted(before)  # conv0..2 (conv0_quant.. from QLinearConv nodes)
    activity = dict(zip(names, ACTIVITY.values()))
    ordered, summary = onnxpred.rewrite_with_summary(model, window=window, channels_last=channels_last,
                                                     channel_activity=activity)
    assert ordered_and_kept(summary) == ([f"{names[0]}: ordered, and the input channels of {names[1]}",
                                          f"{names[1]}: ordered, and the input channels of {names[2]}"],
                                         [f"{names[2]}: Y is a graph output"])
    order0, order1 = (np.argsort(activity[name], kind="stable") for name in names[:2])
    after = weights(ordered)
    np.testing.assert_array_equal(after[names[0]], before[names[0]][order0])
    np.testing.assert_array_equal(after[names[1]], before[names[1]][order1][:, order0])
    np.testing.assert_array_equal(after[names[2]], before[names[2]][:, order1])
    x = np.random.default_rng(7).standard_normal(X_SHAPE).astype(np.float32)
    expected = onnxpred.session(plain).run(None, {"X": x})[0]
    got = onnxpred.session(ordered).run(None, {"X": x})[0]
    if graph == "float":  # the same products, summed in another order
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, expected)


def test_a_layer_reaching_what_is_not_channel_wise_keeps_its_order():
    residual, summary = onnxpred.rewrite_with_summary(float_model(residual=True), channel_activity={
        "conv0": np.arange(4.0)[::-1], "conv1": np.arange(4.0)[::-1]})
    assert ordered_and_kept(summary) == ([], ["conv0: it adds a residual Z", "conv1: it adds a residual Z"])
    _, summary = onnxpred.rewrite_with_summary(float_model(group=2), channel_activity={"conv0": np.arange(4.0)[::-1]})
    assert ordered_and_kept(summary) == ([], ["conv0: a grouped layer"])

    b = GraphBuilder()
    t = b.node("Relu", [b.conv(b.input("X", X_SHAPE), (4, 4, 3, 3), name="conv0")])
    b.output(b.node("Add", [b.node("Relu", [b.conv(t, (4, 4, 3, 3), name="conv1")]), t], ["Y"]))
    _, summary = onnxpred.rewrite_with_summary(b.model(), channel_activity={"conv0": np.arange(4.0)[::-1]})
    ordered, (kept,) = ordered_and_kept(summary)
    assert not ordered and kept.startswith("conv0: ") and kept.endswith("(Add) is not channel-wise")


def test_activity_of_the_wrong_length_leaves_the_layer_alone():
    _, summary = onnxpred.rewrite_with_summary(pooled_float_model(), channel_activity={"conv0": np.arange(5.0)})
    assert ordered_and_kept(summary) == ([], ["conv0: 5 activities for 8 channels"])
