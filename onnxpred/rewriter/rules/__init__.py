"""The patterns PredictiveConv replaces, one rule a module (each states its maths)."""

from . import conv_add_clip, conv_add_relu, conv_clip, conv_relu, fused_conv
from .base import Match, Miss, Rule

RULES: tuple[Rule, ...] = (conv_relu.RULE, conv_clip.RULE, conv_add_relu.RULE, conv_add_clip.RULE, fused_conv.RULE)

__all__ = ["Match", "Miss", "RULES", "Rule"]
