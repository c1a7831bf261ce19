"""The rule the QDQ patterns are: DequantizeLinear'd X, W (and int32 B) → Conv → [activation] →
QuantizeLinear, each node the sole consumer of the one before, replaced by one PredictiveQLinearConv
that reads the quantized x, w and B and writes the QuantizeLinear's output.

The DequantizeLinear nodes stay for any other reader (and go when none is left).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import onnx_graphsurgeon as gs

from ..graph import GraphContext, is_op
from .base import Match, Miss
from .quantized import output_quantization, qdq_operands

# Why a chain's activation (None: none) cannot become the op's clamp, given the output's y_scale and
# y_zero_point and the QuantizeLinear after it; None when it can.
ActivationCheck = Callable[[Optional[gs.Node], GraphContext, gs.Constant, gs.Constant, gs.Node], Optional[str]]


@dataclass(frozen=True)
class QDQChainRule:
    """``activation`` is the op between Conv and QuantizeLinear (None: the quantizer dropped it);
    ``check`` says whether the quantized result is the op's max(q, y_zero_point)."""

    activation: Optional[str]
    check: ActivationCheck
    anchor = ("", "Conv")

    @property
    def ops(self) -> tuple[str, ...]:
        return ("Conv", *((self.activation,) if self.activation else ()), "QuantizeLinear")

    @property
    def pattern(self) -> str:
        """``DQ->Conv->Relu->Q``."""
        return "->".join(("DQ", *self.ops[:-1], "Q"))

    def match(self, node: gs.Node, ctx: GraphContext) -> Match | Miss:
        operands = qdq_operands(node, ctx)
        if isinstance(operands, str):
            return Miss(0, operands)
        nodes = [node]
        for depth, op_type in enumerate(self.ops[1:], start=1):
            consumer = ctx.sole_consumer(nodes[-1].outputs[0], f"{nodes[-1].op} output")
            if isinstance(consumer, str):
                return Miss(depth, consumer)
            if not is_op(consumer, op_type):
                return Miss(depth, f"{nodes[-1].op} output feeds {consumer.op}", expected=op_type)
            nodes.append(consumer)
        quantize = nodes[-1]
        zero_point = quantize.inputs[2] if len(quantize.inputs) > 2 else gs.Variable.empty()
        output = output_quantization(ctx, quantize.inputs[1], zero_point)
        if isinstance(output, str):
            return Miss(len(nodes), output)
        y_scale, y_zero_point = output
        activation = nodes[1] if self.activation else None
        reason = self.check(activation, ctx, y_scale, y_zero_point, quantize)
        if reason:
            return Miss(len(nodes), reason)
        return Match(self.pattern, tuple(nodes), quantized_inputs=operands.op_inputs(y_scale, y_zero_point))


def quantized_value(real: float, y_scale: gs.Constant, y_zero_point: gs.Constant) -> int:
    """QuantizeLinear's integer for ``real`` before saturation: round half to even of real / y_scale
    in float32, plus the zero point."""
    quotient = np.float32(real) / np.float32(np.asarray(y_scale.values))
    return int(np.rint(quotient)) + int(np.asarray(y_zero_point.values))
