"""DQ(x_q), DQ(w_q)[, DQ(B)] → Conv → QuantizeLinear, no activation  ⇒  PredictiveQLinearConv.

The quantizer drops a Relu or Clip(0, c) when the output's quantized range already starts at real 0:

    Q(P) = sat(round(P / y_scale) + y_zp),   P = conv(x, w) + B in real units

With y_zp the type's minimum (0 for uint8, −128 for int8) saturation already clamps from below at
y_zp, so Q(P) = sat(max(round(P / y_scale) + y_zp, y_zp)), the op's output; a Clip's upper bound c
survives only as the top of the range (255·y_scale = 6 for ReLU6 in uint8). Any other y_zp
represents negative values (a Conv without activation, a residual block's Conv before its Add).
"""

from __future__ import annotations

from typing import Optional

import onnx_graphsurgeon as gs

from ..graph import GraphContext, is_op
from .qdq_chain import QDQChainRule
from .quantized import relu_like_reason


def _relu_like(activation: Optional[gs.Node], ctx: GraphContext, y_scale: gs.Constant, y_zero_point: gs.Constant,
               quantize: gs.Node) -> Optional[str]:
    reason = relu_like_reason(y_zero_point)
    if reason and _residual_relu_follows(quantize):
        reason += "; a residual Add->Relu follows, and PredictiveQLinearConv v1 has no residual input"
    return reason


def _residual_relu_follows(quantize: gs.Node) -> bool:
    """Whether the quantized output is dequantized into an Add whose result is quantized Relu-like:
    a residual block's last Conv (the quantizer folds the Relu after the Add into its QuantizeLinear)."""
    adds = [node for dequantize in quantize.outputs[0].outputs if is_op(dequantize, "DequantizeLinear")
            for node in dequantize.outputs[0].outputs if is_op(node, "Add")]
    for add in adds:
        after = add.outputs[0].outputs
        if len(after) == 1 and is_op(after[0], "Relu"):
            return True
        if len(after) == 1 and is_op(after[0], "QuantizeLinear") and len(after[0].inputs) > 2:
            zero_point = after[0].inputs[2]
            if isinstance(zero_point, gs.Constant) and relu_like_reason(zero_point) is None:
                return True
    return False


RULE = QDQChainRule(None, _relu_like)
