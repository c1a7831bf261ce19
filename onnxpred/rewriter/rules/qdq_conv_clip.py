"""DQ(x_q), DQ(w_q)[, DQ(B)] → Conv → Clip(0, c) → QuantizeLinear  ⇒  PredictiveQLinearConv.

    Q(Clip(P, 0, c)) = sat(round(min(max(P, 0), c) / y_scale) + y_zp)

equals the op's sat(max(round(P / y_scale) + y_zp, y_zp)) when the min is 0 (as for Relu) and the
bound c never bites: round(c / y_scale) + y_zp ≥ the type's maximum, i.e. c is at least the largest
real value Y can represent (up to QuantizeLinear's rounding), so that saturation clips where Clip
would. A smaller c (ReLU6 quantized over a wider range) is left alone: the op has no upper clamp.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import onnx_graphsurgeon as gs

from ..activations import node_activation
from ..graph import GraphContext
from .qdq_chain import QDQChainRule, quantized_value
from .quantized import type_maximum


def _clip_within_range(clip: gs.Node, ctx: GraphContext, y_scale: gs.Constant, y_zero_point: gs.Constant,
                       quantize: gs.Node) -> Optional[str]:
    activation = node_activation(clip, ctx)
    if isinstance(activation, str):
        return activation
    if activation.clip_max is None:
        return None
    top = type_maximum(np.asarray(y_zero_point.values).dtype)
    if quantized_value(activation.clip_max, y_scale, y_zero_point) < top:
        largest = (top - int(np.asarray(y_zero_point.values))) * float(np.asarray(y_scale.values))
        return (f"Clip max {activation.clip_max:g} is below the largest value the output represents "
                f"({largest:.4g}); PredictiveQLinearConv has no upper clamp")
    return None


RULE = QDQChainRule("Clip", _clip_within_range)
