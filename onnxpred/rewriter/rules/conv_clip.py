"""Conv → Clip(0, c)  ⇒  PredictiveConv(activation="Clip", clip_max=c).

    Y = min(max(conv(X, W) + B, 0), c),   c > 0 or absent (no upper bound)

ReLU6 is Clip(0, 6). The min must be exactly 0 so that Y = 0 exactly where conv(X, W) + B ≤ 0.
"""

from .chain import ChainRule

RULE = ChainRule(("Conv", "Clip"))
