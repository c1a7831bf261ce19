"""Conv → Add(Z) → Clip(0, c)  ⇒  PredictiveConv(X, W, B, Z; activation="Clip", clip_max=c).

    Y = min(max(conv(X, W) + B + Z, 0), c)

with Z (either Add operand) of exactly the conv output's shape and the Clip min exactly 0.
"""

from .chain import ChainRule

RULE = ChainRule(("Conv", "Add", "Clip"))
