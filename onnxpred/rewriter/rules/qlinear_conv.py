"""QLinearConv (QOperator format) with a Relu-like output  ⇒  PredictiveQLinearConv, one for one.

QLinearConv computes Y = sat(round(P / y_scale) + y_zp) with P = Σ (x − x_zp)·(w − w_zp)·x_scale·w_scale
+ B·x_scale·w_scale; the quantizer fuses a Relu or Clip(0, c) into it by starting the output range at
real 0. With y_zp the type's minimum, saturation is the op's clamp max(·, y_zp) (see ``qdq_conv``);
otherwise the output represents negative values and the layer is left alone. The node's output may
have any consumers, since it is replaced under the same name.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from ..graph import GraphContext
from .base import Match, Miss
from .quantized import output_quantization, qlinear_operands, relu_like_reason

Y_SCALE_INPUT, Y_ZERO_POINT_INPUT = 6, 7


class QLinearConvRule:
    anchor = ("", "QLinearConv")

    def match(self, node: gs.Node, ctx: GraphContext) -> Match | Miss:
        operands = qlinear_operands(node, ctx)
        if isinstance(operands, str):
            return Miss(0, operands)
        output = output_quantization(ctx, node.inputs[Y_SCALE_INPUT], node.inputs[Y_ZERO_POINT_INPUT])
        if isinstance(output, str):
            return Miss(1, output)
        y_scale, y_zero_point = output
        reason = relu_like_reason(y_zero_point)
        if reason:
            return Miss(1, reason)
        return Match("QLinearConv", (node,), quantized_inputs=operands.op_inputs(y_scale, y_zero_point))


RULE = QLinearConvRule()
