"""Conv → Add(Z) → Relu  ⇒  PredictiveConv(X, W, B, Z; activation="Relu").

    Y = max(conv(X, W) + B + Z, 0)

the residual block's last layer; Z (either Add operand) must have exactly the conv output's shape.
"""

from .chain import ChainRule

RULE = ChainRule(("Conv", "Add", "Relu"))
