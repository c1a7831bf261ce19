"""The rule most patterns are: a Conv and a chain of nodes, each the sole consumer of the one before."""

from __future__ import annotations

from dataclasses import dataclass

import onnx_graphsurgeon as gs

from ..activations import node_activation
from ..graph import GraphContext, is_op
from .base import Match, Miss, residual_mismatch


@dataclass(frozen=True)
class ChainRule:
    """``ops`` is the pattern, from the Conv to the activation: ``("Conv", "Add", "Relu")``.

    An ``Add`` step takes its other operand as the residual Z; the last op must be an activation
    PredictiveConv can apply. The intermediate tensors must have no other consumer and must not be
    graph outputs, since they disappear.
    """

    ops: tuple[str, ...]
    anchor = ("", "Conv")

    @property
    def pattern(self) -> str:
        return "->".join(self.ops)

    def match(self, node: gs.Node, ctx: GraphContext) -> Match | Miss:
        nodes, residual = [node], None
        for depth, op_type in enumerate(self.ops[1:], start=1):
            produced = nodes[-1].outputs[0]
            consumer = ctx.sole_consumer(produced, f"{nodes[-1].op} output")
            if isinstance(consumer, str):
                return Miss(depth, consumer)
            if not is_op(consumer, op_type):
                return Miss(depth, f"{nodes[-1].op} output feeds {consumer.op}", expected=op_type)
            if op_type == "Add":
                # Either operand order; Add(y, y) has stopped above (two consumers).
                residual = next(t for t in consumer.inputs if t is not produced)
                mismatch = residual_mismatch(residual, produced)
                if mismatch:
                    return Miss(depth, mismatch)
            nodes.append(consumer)
        activation = node_activation(nodes[-1], ctx)
        if isinstance(activation, str):
            return Miss(len(self.ops), activation)
        return Match(self.pattern, tuple(nodes), activation, residual)
