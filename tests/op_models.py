"""Single-node PredictiveConv models for the op tests."""

from __future__ import annotations

from typing import Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxpred
from onnxpred import op, reference


def single_node_model(
    w: np.ndarray,
    b: Optional[np.ndarray] = None,
    *,
    with_z: bool = False,
    with_counters: bool = True,
    weights_as_input: bool = False,
    x_type: int = TensorProto.FLOAT,
    **attributes,
) -> onnx.ModelProto:
    """A model ``(X[, Z][, W]) -> (Y[, counters])`` around one PredictiveConv node.

    W (and B) are initializers unless ``weights_as_input``.
    """
    inputs = [helper.make_tensor_value_info("X", x_type, None)]
    initializers = []
    if weights_as_input:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, None))
    else:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(w, dtype=np.float32), "W"))
    node_inputs = ["X", "W", ""]
    if b is not None:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(b, dtype=np.float32), "B"))
        node_inputs[2] = "B"
    if with_z:
        inputs.append(helper.make_tensor_value_info("Z", TensorProto.FLOAT, None))
        node_inputs.append("Z")
    while node_inputs[-1] == "":
        node_inputs.pop()
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)]
    node_outputs = ["Y"]
    if with_counters:
        outputs.append(helper.make_tensor_value_info("counters", TensorProto.INT64, [7]))
        node_outputs.append("counters")
    attributes.setdefault("kernel_shape", list(w.shape[2:]))
    node = op.make_node(node_inputs, node_outputs, name="pconv", **attributes)
    graph = helper.make_graph([node], "predictive_conv", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), op.opset_import()])
    model.ir_version = 8
    return model


def assert_counters_match(counters: np.ndarray, expected: np.ndarray) -> None:
    """Counters equal the reference's, except ``macs_executed``: a kernel may compute predicted
    outputs anyway (a dense fallback) and zero them, so it lies between the reference's lower
    bound and ``macs_dense``."""
    np.testing.assert_array_equal(counters[:6], expected[:6])
    assert expected[6] <= counters[6] <= expected[5], (counters, expected)


def run_op(x, w, b=None, z=None, *, threads=None, weights_as_input=False, **attributes):
    """Runs a single-node model (see :func:`single_node_model`) and returns ``[Y, counters]``."""
    model = single_node_model(w, b, with_z=z is not None, weights_as_input=weights_as_input, **attributes)
    options = {"intra_op_num_threads": threads} if threads else {}
    feeds = {"X": x}
    if z is not None:
        feeds["Z"] = z
    if weights_as_input:
        feeds["W"] = w
    return onnxpred.session(model, **options).run(None, feeds)


def assert_matches_reference(x, w, b=None, z=None, *, weights_as_input=False, **attributes) -> dict[str, int]:
    """Y equals the NumPy reference's exactly and the counters match (:func:`assert_counters_match`);
    returns the op's counters by name."""
    y, counters = run_op(x, w, b, z, weights_as_input=weights_as_input, **attributes)
    expected_y, expected_counters = reference.predictive_conv(x, w, b, z, **attributes)
    np.testing.assert_array_equal(y, expected_y, err_msg=str(attributes))
    assert_counters_match(counters, expected_counters)
    return dict(zip(onnxpred.COUNTER_NAMES, counters.tolist()))


def assert_same_at_one_and_two_threads(x, w, b=None, **attributes) -> None:
    """Y and counters do not depend on how many intra-op threads share the work."""
    one = run_op(x, w, b, threads=1, **attributes)
    two = run_op(x, w, b, threads=2, **attributes)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
