"""The patterns PredictiveConv and PredictiveQLinearConv replace, one rule a module (each states its maths)."""

from . import (conv_add_clip, conv_add_relu, conv_clip, conv_relu, fused_conv, qdq_conv, qdq_conv_clip, qdq_conv_relu,
               qlinear_conv)
from .base import Match, Miss, Rule

RULES: tuple[Rule, ...] = (conv_relu.RULE, conv_clip.RULE, conv_add_relu.RULE, conv_add_clip.RULE, fused_conv.RULE)
# For quantized layers (quantized.is_quantized_layer): QDQ Convs and QLinearConv.
QUANTIZED_RULES: tuple[Rule, ...] = (qdq_conv_relu.RULE, qdq_conv_clip.RULE, qdq_conv.RULE, qlinear_conv.RULE)

__all__ = ["Match", "Miss", "QUANTIZED_RULES", "RULES", "Rule"]
