"""com.microsoft::FusedConv with a Relu or Clip activation  ⇒  PredictiveConv.

onnxruntime's FusedConv computes

    Y = act(conv(X, W) + B + Z)      (Z optional)

with ``activation`` "Relu", or "Clip" and ``activation_params = [min, max]``: PredictiveConv's A,
provided the activation qualifies (Clip min exactly 0). The node is replaced one for one, so its
output may be a graph output and have any number of consumers.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from ..activations import ACTIVATION_OPS, Activation, clip_activation
from ..graph import MICROSOFT_DOMAIN, GraphContext
from .base import Match, Miss, residual_mismatch

RESIDUAL_INPUT = 3


class FusedConvRule:
    anchor = (MICROSOFT_DOMAIN, "FusedConv")

    def match(self, node: gs.Node, ctx: GraphContext) -> Match | Miss:
        kind = node.attrs.get("activation", "")
        params = list(node.attrs.get("activation_params", []))
        if kind not in ACTIVATION_OPS:
            return Miss(1, f"FusedConv activation {kind or 'none'} is not {' or '.join(ACTIVATION_OPS)}")
        if kind == "Clip" and len(params) != 2:
            return Miss(1, "FusedConv Clip without activation_params [min, max]")
        activation = Activation("Relu") if kind == "Relu" else clip_activation(*params)
        if isinstance(activation, str):
            return Miss(1, activation)
        has_residual = len(node.inputs) > RESIDUAL_INPUT and node.inputs[RESIDUAL_INPUT].name
        residual = node.inputs[RESIDUAL_INPUT] if has_residual else None
        if residual is not None and (mismatch := residual_mismatch(residual, node.outputs[0])):
            return Miss(1, mismatch)
        pattern = f"FusedConv->Add->{kind}" if residual is not None else f"FusedConv->{kind}"
        return Match(pattern, (node,), activation, residual)


RULE = FusedConvRule()
