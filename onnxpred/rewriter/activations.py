"""Activations PredictiveConv can absorb: those whose zero set is exactly {x ≤ 0}.

Relu(x) = max(x, 0) and Clip(x, 0, c) = min(max(x, 0), c) with c > 0 are zero exactly where x ≤ 0,
which is what lets a window of zero samples stand for zeros around them. Clip with any other lower
bound is not: Clip(x, −1, 6) is non-zero for x < 0, Clip(x, 0.5, 6) is never zero.

An absent Clip max is read as no upper bound (ONNX's default is FLT_MAX: the two differ only for +inf).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import onnx_graphsurgeon as gs

from .graph import GraphContext, is_op

ACTIVATION_OPS = ("Relu", "Clip")
# Clip took min/max as attributes up to opset 10 and as inputs from opset 11 on.
CLIP_BOUNDS_AS_INPUTS_OPSET = 11


@dataclass(frozen=True)
class Activation:
    kind: str                        # "Relu" or "Clip"
    clip_max: Optional[float] = None  # Clip's upper bound; None: unbounded


def clip_activation(minimum: Optional[float], maximum: Optional[float]) -> Activation | str:
    """Clip(minimum, maximum) as an Activation, or why it does not qualify (None: bound absent)."""
    if minimum is None:
        return "Clip has no lower bound"
    if minimum != 0:
        return f"Clip min is {minimum:g}, not 0"
    if maximum is not None and not maximum > 0:
        return f"Clip max is {maximum:g}, not > 0"
    return Activation("Clip", maximum)


def node_activation(node: gs.Node, ctx: GraphContext) -> Activation | str:
    """The activation a Relu or Clip node applies, or why PredictiveConv cannot apply it."""
    if is_op(node, "Relu"):
        return Activation("Relu")
    if ctx.opset < CLIP_BOUNDS_AS_INPUTS_OPSET:
        return clip_activation(node.attrs.get("min"), node.attrs.get("max"))
    bounds = []
    for index, label in ((1, "min"), (2, "max")):
        if len(node.inputs) <= index or not node.inputs[index].name:
            bounds.append(None)
            continue
        value = ctx.constant_value(node.inputs[index])
        if value is None or value.size != 1:
            return f"Clip {label} is not a constant scalar"
        bounds.append(float(np.asarray(value).reshape(())))
    return clip_activation(*bounds)
