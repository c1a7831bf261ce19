"""onnx shape inference that also works on models over 2 GB."""

from __future__ import annotations

import onnx
from onnx import helper

from ..errors import InputError
from ..model_io import tensor_bytes

# Initializers above this size are declared to shape inference, not given: it reads the values of
# small shape operands only (Reshape's shape, Pad's pads, ...), never of weights.
DECLARE_ONLY_BYTES = 1 << 16


def infer_shapes(model: onnx.ModelProto) -> None:
    """Fill ``model``'s value_info and output types from onnx shape inference, in place.

    Inference runs on a serialized copy, which protobuf cannot make beyond 2 GB, so it runs on a
    skeleton of the model whose large initializers are declared as graph inputs of their shape.
    """
    graph = model.graph
    large = [t for t in graph.initializer if tensor_bytes(t) > DECLARE_ONLY_BYTES]
    large_names = {t.name for t in large}
    listed = {i.name for i in graph.input}
    declared = [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in large if t.name not in listed]
    skeleton = helper.make_model(
        helper.make_graph(
            graph.node,
            graph.name,
            [*graph.input, *declared],
            graph.output,
            [t for t in graph.initializer if t.name not in large_names],
            value_info=graph.value_info,
        ),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
        functions=model.functions,
    )
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as error:
        raise InputError(f"shape inference failed: {error}") from error
    graph.ClearField("value_info")
    graph.value_info.extend(inferred.graph.value_info)
    for output, inferred_output in zip(graph.output, inferred.graph.output):
        output.CopyFrom(inferred_output)
