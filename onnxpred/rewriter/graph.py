"""The view of an ONNX graph that passes and rules share: onnx-graphsurgeon nodes plus the facts
gs does not keep (opset, initializers that are also graph inputs) and small queries on them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..errors import UnsupportedModelError

DEFAULT_DOMAINS = ("", "ai.onnx")
MICROSOFT_DOMAIN = "com.microsoft"
# (domain, op_type) of the nodes the rewriter calls layers.
CONV_OPS = (("", "Conv"), (MICROSOFT_DOMAIN, "FusedConv"), ("", "QLinearConv"))
# QLinearConv's inputs: x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point[, B].
QLINEAR_WEIGHT_INPUT = 3


def is_op(node: gs.Node, op_type: str, domain: str = "") -> bool:
    node_domain = node.domain or ""
    if domain == "":
        return node.op == op_type and node_domain in DEFAULT_DOMAINS
    return node.op == op_type and node_domain == domain


def is_conv(node: gs.Node) -> bool:
    return any(is_op(node, op_type, domain) for domain, op_type in CONV_OPS)


def shape_text(shape: Optional[Sequence]) -> str:
    """``1x64x56x56``; symbolic dims by name, unknown ones as ``?``."""
    if shape is None:
        return "?"
    return "x".join("?" if dim is None else str(dim) for dim in shape)


@dataclass
class GraphContext:
    """A gs graph being rewritten, with what the passes need to know about the model around it."""

    graph: gs.Graph
    opset: int
    # Initializers also listed as graph inputs: their values can be replaced at run time, so they
    # are not constants (gs drops them from ``graph.inputs``; the model keeps them).
    overridable: frozenset[str] = frozenset()
    _node_names: set[str] = field(default_factory=set, repr=False)
    _tensor_names: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def from_model(cls, model: onnx.ModelProto) -> "GraphContext":
        opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), None)
        if opset is None:
            raise UnsupportedModelError("the model imports no version of the default ONNX domain")
        newest = onnx.defs.onnx_opset_version()
        if opset > newest:
            raise UnsupportedModelError(
                f"the model imports opset {opset} of the default ONNX domain; the installed onnx knows up to {newest}")
        initializers = {t.name for t in model.graph.initializer}
        overridable = frozenset(i.name for i in model.graph.input if i.name in initializers)
        graph = gs.import_onnx(model)
        return cls(graph, opset, overridable, {n.name for n in graph.nodes}, set(graph.tensors()))

    def convs(self) -> list[gs.Node]:
        return [node for node in self.graph.nodes if is_conv(node)]

    def is_constant(self, tensor: gs.Tensor) -> bool:
        """An initializer or a Constant node's output: a value fixed when the model is loaded."""
        if isinstance(tensor, gs.Constant):
            return tensor.name not in self.overridable
        return len(tensor.inputs) == 1 and is_op(tensor.inputs[0], "Constant")

    def constant_value(self, tensor: gs.Tensor) -> Optional[np.ndarray]:
        """The value of a constant tensor (see :meth:`is_constant`), None for any other."""
        if not self.is_constant(tensor):
            return None
        if isinstance(tensor, gs.Constant):
            return np.asarray(tensor.values)
        return _constant_node_value(tensor.inputs[0])

    def as_initializer(self, tensor: gs.Tensor) -> gs.Constant:
        """A constant tensor as an initializer (a Constant node's output is copied into a new one)."""
        if isinstance(tensor, gs.Constant):
            return tensor
        return self.new_constant(tensor.name, self.constant_value(tensor))

    def is_graph_output(self, tensor: gs.Tensor) -> bool:
        return any(out is tensor for out in self.graph.outputs)

    def sole_consumer(self, tensor: gs.Tensor, what: str) -> gs.Node | str:
        """The one node reading ``tensor``, or why there is not exactly one (``what`` names the tensor)."""
        if self.is_graph_output(tensor):
            return f"{what} is a graph output"
        consumers = list(tensor.outputs)
        if not consumers:
            return f"{what} is unused"
        if len(consumers) > 1:
            return f"{what} has {len(consumers)} consumers"
        return consumers[0]

    def unique_node_name(self, base: str) -> str:
        """A node name not used in the graph yet: ``base`` itself when free, else ``base_2``, ..."""
        return _claim_unique(base, self._node_names)

    def unique_tensor_name(self, base: str) -> str:
        return _claim_unique(base, self._tensor_names)

    def claim_tensor_name(self, name: str) -> str:
        """``name`` for a new tensor, which must not exist yet (names other tools rely on)."""
        if name in self._tensor_names:
            raise UnsupportedModelError(f"the model already has a tensor named {name!r}")
        self._tensor_names.add(name)
        return name

    def new_constant(self, base: str, values: np.ndarray) -> gs.Constant:
        return gs.Constant(self.unique_tensor_name(base), np.ascontiguousarray(values))

    def replace_nodes(self, old: Sequence[gs.Node], new: gs.Node) -> None:
        """Put ``new`` where the last of ``old`` stood (its inputs are all computed before that point)
        and detach ``old`` from every tensor."""
        self.graph.nodes[self._position(old[-1])] = new
        for node in old[:-1]:
            self.remove_node(node)
        old[-1].inputs.clear()
        old[-1].outputs.clear()

    def surround(self, node: gs.Node, before: gs.Node, after: gs.Node) -> None:
        """Put ``before`` just ahead of ``node`` and ``after`` just behind it in the graph's order."""
        position = self._position(node)
        self.graph.nodes[position:position + 1] = [before, node, after]

    def remove_node(self, node: gs.Node) -> None:
        node.inputs.clear()
        node.outputs.clear()
        del self.graph.nodes[self._position(node)]

    def _position(self, node: gs.Node) -> int:
        # By identity: gs compares nodes by name, op and tensors, which detached nodes may share.
        return next(i for i, candidate in enumerate(self.graph.nodes) if candidate is node)


def _constant_node_value(node: gs.Node) -> Optional[np.ndarray]:
    attrs = node.attrs
    if "value" in attrs:
        return np.asarray(attrs["value"].values)
    for name, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
        if name in attrs:
            return np.asarray(attrs[name], dtype=dtype)
    return None


def conv_attributes(conv: gs.Node, spatial_rank: int) -> dict:
    """A Conv's geometry with the ONNX defaults filled in (pads as begin..., end...)."""
    attrs = conv.attrs
    return dict(
        strides=list(attrs.get("strides", [1] * spatial_rank)),
        dilations=list(attrs.get("dilations", [1] * spatial_rank)),
        pads=list(attrs.get("pads", [0] * 2 * spatial_rank)),
        group=int(attrs.get("group", 1)),
    )


def weight_tensor(conv: gs.Node) -> gs.Tensor:
    """A layer's W: input 1 of Conv and FusedConv, input 3 of QLinearConv."""
    return conv.inputs[QLINEAR_WEIGHT_INPUT if is_op(conv, "QLinearConv") else 1]


def weight_shape(ctx: GraphContext, conv: gs.Node) -> Optional[tuple]:
    """W's shape without loading an initializer's values."""
    weights = weight_tensor(conv)
    if weights.shape is not None:
        return tuple(weights.shape)
    value = ctx.constant_value(weights)
    return None if value is None else value.shape


def dense_macs_per_image(ctx: GraphContext, conv: gs.Node) -> Optional[int]:
    """M·oH·oW · (C/group)·kH·kW: the multiply-accumulates of one image, None if a shape is unknown."""
    w_shape = weight_shape(ctx, conv)
    out_shape = conv.outputs[0].shape
    dims = [*(out_shape or [None])[1:], *(w_shape or [None])[1:]]
    if not all(isinstance(d, int) for d in dims):
        return None
    return int(np.prod(dims, dtype=np.int64))


def _claim_unique(base: str, taken: set[str]) -> str:
    name = next(c for c in itertools.chain([base], (f"{base}_{i}" for i in itertools.count(2))) if c not in taken)
    taken.add(name)
    return name
