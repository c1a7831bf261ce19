"""Invalid uses of PredictiveConv: an onnxruntime error naming the node and the problem."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxpred
from op_models import single_node_model

NODE = "PredictiveConv node 'pconv'"


def set_attribute(model, name, value):
    node = model.graph.node[0]
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])
    return model


def run(model, x, z=None):
    feeds = {"X": x}
    if z is not None:
        feeds["Z"] = z
    return onnxpred.session(model).run(None, feeds)


W3 = np.ones((4, 2, 3, 3), np.float32)
X = np.ones((1, 2, 6, 6), np.float32)

# (case id, model factory, input X, input Z, expected message fragment)
INVALID_USES = [
    ("X-rank", lambda: single_node_model(W3), np.ones((2, 6, 6), np.float32), None, "input X must be 4-D"),
    ("W-rank", lambda: single_node_model(np.ones((4, 2, 3), np.float32), kernel_shape=[3, 3]), X, None,
     "input W must be 4-D"),
    ("channels-vs-group", lambda: single_node_model(W3, group=2), np.ones((1, 5, 6, 6), np.float32), None,
     "input X has 5 channels but W [4, 2, 3, 3] with group 2 expects 4"),
    ("output-channels-vs-group", lambda: single_node_model(np.ones((3, 1, 3, 3), np.float32), group=2),
     X, None, "not divisible by group 2"),
    ("kernel-shape-vs-W", lambda: single_node_model(W3, kernel_shape=[5, 5]), X, None,
     "attribute 'kernel_shape' [5, 5] contradicts the shape of W [4, 2, 3, 3]"),
    ("bias-length", lambda: single_node_model(W3, np.ones(3, np.float32)), X, None,
     "input B must have shape [4], got [3]"),
    ("non-float-X", lambda: single_node_model(W3, x_type=TensorProto.DOUBLE), X.astype(np.float64), None,
     "input X must be a float32 tensor"),
    ("window-zero", lambda: set_attribute(single_node_model(W3), "window", 0), X, None, "attribute 'window' must be >= 1, got 0"),
    ("window-negative", lambda: set_attribute(single_node_model(W3), "window", -1), X, None,
     "attribute 'window' must be >= 1, got -1"),
    ("window-not-int", lambda: set_attribute(single_node_model(W3), "window", 2.5), X, None,
     "attribute 'window' must be an int"),
    ("unknown-activation", lambda: set_attribute(single_node_model(W3), "activation", "Sigmoid"), X, None,
     "attribute 'activation' must be \"Relu\" or \"Clip\", got \"Sigmoid\""),
    ("negative-pads", lambda: set_attribute(single_node_model(W3), "pads", [1, -1, 1, 1]), X, None,
     "attribute 'pads' must hold values >= 0"),
    ("pads-count", lambda: set_attribute(single_node_model(W3), "pads", [1, 1]), X, None, "attribute 'pads' must have 4 values"),
    ("zero-stride", lambda: set_attribute(single_node_model(W3), "strides", [0, 1]), X, None, "attribute 'strides' must hold values >= 1"),
    ("Z-shape", lambda: single_node_model(W3, with_z=True), X, np.ones((1, 4, 3, 3), np.float32),
     "input Z must have the output's shape [1, 4, 4, 4], got [1, 4, 3, 3]"),
    ("input-smaller-than-kernel", lambda: single_node_model(W3), np.ones((1, 2, 2, 6), np.float32), None,
     "padded input 2x6 is smaller than the dilated kernel 3x3"),
    ("clip-max-not-positive", lambda: set_attribute(single_node_model(W3, activation="Clip"), "clip_max", -1.0), X, None,
     "attribute 'clip_max' must be > 0"),
    ("clip-max-with-relu", lambda: set_attribute(single_node_model(W3), "clip_max", 6.0), X, None,
     "attribute 'clip_max' is only valid with activation \"Clip\""),
    ("window-too-large", lambda: set_attribute(single_node_model(W3), "window", 4097), X, None,
     "attribute 'window' must be <= 4096, got 4097"),
    ("unknown-pattern", lambda: set_attribute(single_node_model(W3), "pattern", "spiral"), X, None,
     "attribute 'pattern' must be \"diagonal\", \"anti_diagonal\", \"both_diagonals\", \"checkerboard\", "
     "\"corners\" or \"centre\", got \"spiral\""),
    ("negative-margin", lambda: set_attribute(single_node_model(W3), "margin", -1.0), X, None,
     "attribute 'margin' must be >= 0, got -1"),
    ("infinite-margin", lambda: set_attribute(single_node_model(W3), "margin", float("inf")), X, None,
     "attribute 'margin' must be finite, got inf"),
    ("nan-margin", lambda: set_attribute(single_node_model(W3), "margin", float("nan")), X, None,
     "attribute 'margin' must be finite, got nan"),
    ("margin-not-float", lambda: set_attribute(single_node_model(W3), "margin", 1), X, None,
     "attribute 'margin' must be a float"),
    ("audit-not-boolean", lambda: set_attribute(single_node_model(W3), "audit", 2), X, None,
     "attribute 'audit' must be <= 1, got 2"),
]


@pytest.mark.parametrize("make_model, x, z, message", [case[1:] for case in INVALID_USES],
                         ids=[case[0] for case in INVALID_USES])
def test_invalid_use_is_reported_with_node_and_problem(make_model, x, z, message):
    with pytest.raises(Exception) as raised:
        run(make_model(), x, z)
    text = str(raised.value)
    assert NODE in text, text
    assert message in text, text


def test_missing_optional_attributes_take_their_defaults():
    model = single_node_model(W3)
    node = model.graph.node[0]
    kept = [a for a in node.attribute if a.name in ("kernel_shape",)]
    del node.attribute[:]
    node.attribute.extend(kept)
    y, counters = run(model, X)
    assert y.shape == (1, 4, 4, 4)  # strides 1, no pads; window 3 by default
    assert counters[0] == 64
