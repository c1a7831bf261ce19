"""Small float models quantized by onnxruntime's own quantizer, and edits that make the graphs
onnxruntime writes in other settings (an explicit Relu or Clip before the QuantizeLinear, another zero
point): the inputs of the quantized rules' tests."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper
from rewriter_graphs import GraphBuilder

X_SHAPE = [1, 4, 8, 8]


def float_model(activation: Optional[str] = "Relu", *, residual: bool = False, layers: int = 2,
                clip_max: float = 6.0, group: int = 1) -> onnx.ModelProto:
    """X → layers × (Conv 3x3 of ``group`` [→ Add(the layer's input)] → activation) → Y; ``activation``
    "Relu", "Clip" (0, ``clip_max``) or None; convs named conv0, conv1, ..."""
    b = GraphBuilder()
    t = b.input("X", X_SHAPE)
    for index in range(layers):
        t_in = t
        t = b.conv(t, (4, 4 // group, 3, 3), name=f"conv{index}", group=group)
        if residual:
            t = b.node("Add", [t, t_in])
        if activation == "Relu":
            t = b.node("Relu", [t])
        elif activation == "Clip":
            t = b.node("Clip", [t, b.constant(f"lo{index}", 0.0), b.constant(f"hi{index}", clip_max)])
    b.output(b.node("Identity", [t], ["Y"]))
    return b.model()


def pooled_float_model() -> onnx.ModelProto:
    """X → conv0→Relu → MaxPool 2x2 → conv1→Relu → conv2→Relu → Y: a pool between two layers."""
    b = GraphBuilder()
    t = b.node("Relu", [b.conv(b.input("X", X_SHAPE), (8, 4, 3, 3), name="conv0")])
    t = b.node("MaxPool", [t], kernel_shape=[2, 2], strides=[2, 2])
    for index in (1, 2):
        t = b.node("Relu", [b.conv(t, (8, 8, 3, 3), name=f"conv{index}")])
    b.output(b.node("Identity", [t], ["Y"]))
    return b.model()


def quantize(model: onnx.ModelProto, *, per_channel: bool = True, activations=np.uint8, symmetric: bool = False,
             qoperator: bool = False, weights=np.int8) -> onnx.ModelProto:
    """``model`` through ``onnxruntime.quantization.quantize_static``, calibrated on 4 seeded random inputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    types = {np.dtype(np.uint8): QuantType.QUInt8, np.dtype(np.int8): QuantType.QInt8}
    rng = np.random.default_rng(0)

    feed = model.graph.input[0]
    shape = [d.dim_value or 1 for d in feed.type.tensor_type.shape.dim]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = 4

        def get_next(self):
            self.left -= 1
            return {feed.name: rng.standard_normal(shape).astype(np.float32)} if self.left >= 0 else None

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        onnx.save(model, source)
        quantize_static(source, target, Reader(), quant_format=QuantFormat.QOperator if qoperator else QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=types[np.dtype(activations)],
                        weight_type=types[np.dtype(weights)], extra_options={"ActivationSymmetric": symmetric})
        return onnx.load(target)


def node(model: onnx.ModelProto, op_type: str, index: int = 0) -> onnx.NodeProto:
    """The ``index``-th node of ``op_type`` in graph order."""
    return [n for n in model.graph.node if n.op_type == op_type][index]


def copied(model: onnx.ModelProto) -> onnx.ModelProto:
    result = onnx.ModelProto()
    result.CopyFrom(model)
    return result


def dequantize_of(model: onnx.ModelProto, conv_index: int, operand: int) -> onnx.NodeProto:
    """The DequantizeLinear writing input ``operand`` (0 X, 1 W, 2 B) of the ``conv_index``-th Conv."""
    tensor = node(model, "Conv", conv_index).input[operand]
    return next(n for n in model.graph.node if n.output[0] == tensor)


def initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def set_initializer(model: onnx.ModelProto, name: str, values) -> None:
    tensor = initializer(model, name)
    tensor.CopyFrom(numpy_helper.from_array(np.asarray(values, dtype=numpy_helper.to_array(tensor).dtype), name))


def conv_quantize(model: onnx.ModelProto, conv: str) -> onnx.NodeProto:
    """The QuantizeLinear after the Conv named ``conv`` (directly, or after an activation inserted by
    :func:`insert_before_quantize`)."""
    output = next(n for n in model.graph.node if n.name == conv).output[0]
    between = next((n.output[0] for n in model.graph.node if n.name == f"{output}_activation"), output)
    return next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == between)


def insert_before_quantize(model: onnx.ModelProto, conv: str, op_type: str, *extra_inputs: str) -> onnx.NodeProto:
    """Put ``op_type`` (Relu, or Clip with its bound inputs) between the Conv ``conv`` and its QuantizeLinear,
    as the quantizer writes it when it keeps the activation."""
    quantize_node = conv_quantize(model, conv)
    between = f"{quantize_node.input[0]}_activation"
    inserted = helper.make_node(op_type, [quantize_node.input[0], *extra_inputs], [between], name=between)
    quantize_node.input[0] = between
    position = list(model.graph.node).index(quantize_node)
    model.graph.node.insert(position, inserted)
    return inserted


def add_scalar(model: onnx.ModelProto, name: str, value: float) -> str:
    model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name))
    return name
