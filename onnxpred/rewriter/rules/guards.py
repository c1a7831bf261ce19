"""Guards every pattern shares: what a Conv or FusedConv itself must be to become a PredictiveConv."""

from __future__ import annotations

from typing import Optional

import numpy as np
import onnx_graphsurgeon as gs

from ..graph import GraphContext, weight_shape

BIAS_INPUT = 2


def unsupported_geometry(node: gs.Node, ctx: GraphContext) -> Optional[str]:
    """Why ``node`` is not a convolution the ops compute (2-D, explicit pads), or None."""
    w_shape = weight_shape(ctx, node)
    if w_shape is None:
        return "weight shape unknown"
    if len(w_shape) != 4:
        return f"{len(w_shape) - 2}-D conv (the ops are 2-D)"
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad != "NOTSET":
        return f"auto_pad {auto_pad} on an input of unknown spatial size"
    return None


def unsupported_layer(node: gs.Node, ctx: GraphContext) -> Optional[str]:
    """Why float ``node`` cannot be rewritten whatever follows it, or None.

    PredictiveConv is a 2-D float32 convolution with explicit pads whose weights (and bias) are
    fixed when the model is loaded, so that the kernel can pack them once.
    """
    geometry = unsupported_geometry(node, ctx)
    if geometry:
        return geometry
    weights = node.inputs[1]
    if not ctx.is_constant(weights):
        return "dynamic weights (W is not a constant)"
    if weights.dtype is not None and np.dtype(weights.dtype) != np.float32:
        return f"{np.dtype(weights.dtype).name} weights (PredictiveConv is float32)"
    if len(node.inputs) > BIAS_INPUT and node.inputs[BIAS_INPUT].name and not ctx.is_constant(node.inputs[BIAS_INPUT]):
        return "dynamic bias (B is not a constant)"
    return None
