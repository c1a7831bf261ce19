"""DQ(x_q), DQ(w_q)[, DQ(B)] → Conv → Relu → QuantizeLinear  ⇒  PredictiveQLinearConv.

    Q(Relu(P)) = sat(round(max(P, 0) / y_scale) + y_zp) = sat(max(round(P / y_scale) + y_zp, y_zp))

for every y_zp of the type (rounding is monotone and round(0) = 0, and saturation keeps y_zp), which is
the op's clamp at y_zp: Relu then QuantizeLinear.
"""

from __future__ import annotations

from .qdq_chain import QDQChainRule

RULE = QDQChainRule("Relu", lambda *_: None)
