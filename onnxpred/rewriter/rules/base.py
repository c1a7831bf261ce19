"""What a rule reports: the nodes it would replace (a Match) or how far it got and why not (a Miss)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import onnx_graphsurgeon as gs

from ..activations import Activation
from ..graph import GraphContext, shape_text


@dataclass(frozen=True)
class Match:
    pattern: str                  # "Conv->Add->Relu"
    nodes: tuple[gs.Node, ...]    # replaced by one op: the conv first, the node writing its output last
    activation: Optional[Activation] = None  # PredictiveConv's; None for a quantized match
    residual: Optional[gs.Tensor] = None  # Z, added before the activation
    # A quantized match: PredictiveQLinearConv's inputs, in its order (x, x_scale, ..., y_zero_point[, B]).
    quantized_inputs: Optional[tuple[gs.Tensor, ...]] = None

    @property
    def conv(self) -> gs.Node:
        return self.nodes[0]

    @property
    def output(self) -> gs.Tensor:
        """The activation's (or QuantizeLinear's) output, which the new node produces under the same name."""
        return self.nodes[-1].outputs[0]


@dataclass(frozen=True)
class Miss:
    depth: int                      # nodes matched before failing: the deepest miss explains best
    reason: str
    expected: Optional[str] = None  # set when another op type stood where this one was wanted


class Rule(Protocol):
    anchor: tuple[str, str]  # (domain, op type) of the node the pattern starts at

    def match(self, node: gs.Node, ctx: GraphContext) -> Match | Miss:
        ...


def residual_mismatch(residual: gs.Tensor, output: gs.Tensor) -> Optional[str]:
    """Why Z cannot be PredictiveConv's residual: it must have exactly the conv output's shape
    (the op does not broadcast), with every dimension known."""
    z_shape, y_shape = residual.shape, output.shape
    if z_shape is None or y_shape is None or None in z_shape or None in y_shape:
        return f"residual shape {shape_text(z_shape)} or conv output shape {shape_text(y_shape)} unknown"
    if list(z_shape) != list(y_shape):
        return f"residual shape {shape_text(z_shape)} differs from the conv output's {shape_text(y_shape)}"
    return None
