"""Small hand-built graphs for the rewriter tests, and the checks every rewrite must pass."""

from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxpred
from onnxpred import op
from onnxpred.rewriter.shapes import infer_shapes

RTOL = ATOL = 1e-4


class GraphBuilder:
    """``b = GraphBuilder(); x = b.input("X", [1, 4, 8, 8]); y = b.node("Relu", [x]); b.output(y)``."""

    def __init__(self, opset: int = 17, seed: int = 0):
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inputs, self.outputs, self.initializers = [], [], [], []
        self.extra_opsets: list[onnx.OperatorSetIdProto] = []
        self._count = Counter()

    def input(self, name: str, shape: Optional[Sequence], elem_type: int = TensorProto.FLOAT) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def constant(self, name: str, values, dtype=np.float32) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def weights(self, name: str, shape: Sequence[int]) -> str:
        return self.constant(name, self.rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:])))

    def node(self, op_type: str, inputs: Sequence[str], outputs: Optional[Sequence[str]] = None, *,
             name: Optional[str] = None, domain: str = "", **attrs) -> str:
        self._count[op_type] += 1
        name = name if name is not None else f"{op_type.lower()}{self._count[op_type]}"
        outputs = list(outputs) if outputs else [f"{name}_out"]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=name, domain=domain, **attrs))
        return outputs[0]

    def conv(self, x: str, w_shape: Sequence[int], *, bias: bool = True, name: Optional[str] = None, **attrs) -> str:
        """A Conv with random constant weights (and bias); pads default to 'same' for odd kernels."""
        self._count["W"] += 1
        w = self.weights(f"W{self._count['W']}", w_shape)
        inputs = [x, w] + ([self.constant(f"B{self._count['W']}", self.rng.standard_normal(w_shape[0]) * 0.1)] if bias else [])
        attrs.setdefault("pads", [k // 2 for k in w_shape[2:]] * 2)
        return self.node("Conv", inputs, name=name, **attrs)

    def output(self, name: str, shape: Optional[Sequence] = None, elem_type: int = TensorProto.FLOAT) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "test", self.inputs, self.outputs, self.initializers)
        opsets = [helper.make_opsetid("", self.opset), *self.extra_opsets]
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 8
        return model


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(node.op_type for node in model.graph.node)


def random_feeds(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        shape = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def run(model: onnx.ModelProto, feeds: dict, outputs: Optional[list[str]] = None) -> list[np.ndarray]:
    return onnxpred.session(model, intra_op_num_threads=1).run(outputs, feeds)


def inferred_shapes(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    infer_shapes(copy)
    return {v.name: v.type for v in [*copy.graph.value_info, *copy.graph.output]}


def check_rewrite(
    model: onnx.ModelProto,
    *,
    rewritten: int,
    left: int = 0,
    feeds: Optional[dict] = None,
    **options,
) -> tuple[onnx.ModelProto, "onnxpred.rewriter.summary.RewriteSummary"]:
    """Rewrite ``model`` and check what every rewrite must satisfy: the expected number of
    PredictiveConv nodes and left-alone layers, onnx.checker (full), original outputs and known
    shapes kept, and with every window 1 the original's outputs within tolerance in onnxruntime."""
    result, summary = onnxpred.rewrite_with_summary(model, **options)
    assert op_counts(result)["PredictiveConv"] == rewritten == summary.layers_rewritten, summary.format_table()
    assert summary.layers_left == left, summary.format_table()
    assert any(o.domain == op.DOMAIN and o.version == op.OPSET_VERSION for o in result.opset_import)
    onnx.checker.check_model(result, full_check=True)

    original_outputs = [o.name for o in model.graph.output]
    assert [o.name for o in result.graph.output][: len(original_outputs)] == original_outputs
    before, after = inferred_shapes(model), {v.name: v.type for v in [*result.graph.value_info, *result.graph.output]}
    for name, value_type in after.items():
        if name in before:
            assert value_type == before[name], f"shape of {name} changed"
    for node in result.graph.node:
        if node.op_type == "PredictiveConv":
            assert node.output[0] in after, f"{node.name}'s output lost its shape"

    feeds = feeds or random_feeds(model)
    expected = run(model, feeds)
    actual = run(onnxpred.set_windows(result, 1), feeds, original_outputs)
    for name, want, got in zip(original_outputs, expected, actual):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * scale, err_msg=name)
    return result, summary


def predictive_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "PredictiveConv"]


def attributes(node: onnx.NodeProto) -> dict:
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}
