"""Conv → Relu  ⇒  PredictiveConv(activation="Relu").

    Y = max(conv(X, W) + B, 0)

which is PredictiveConv's A with Z = 0; with window 1 the op computes exactly this.
"""

from .chain import ChainRule

RULE = ChainRule(("Conv", "Relu"))
