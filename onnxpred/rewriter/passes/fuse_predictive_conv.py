"""Replace every Conv pattern the rules match by one ``ai.onnxpred::PredictiveConv`` node, or for a
quantized layer (QDQ Conv, QLinearConv) one ``ai.onnxpred::PredictiveQLinearConv``.

The new node takes the Conv's name (the layer name) and writes the activation's (or for a quantized
layer the QuantizeLinear's) output tensor, so consumers and graph outputs keep reading the same name.
Where two Convs meet at one residual Add (ResNet's block output and its downsample shortcut), the one
with more MACs is fused: prediction saves MACs only in the fused Conv, and either choice computes the
same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np
import onnx_graphsurgeon as gs
from onnx import helper

from ... import op
from ..graph import GraphContext, conv_attributes, dense_macs_per_image, is_op, weight_shape
from ..rules import QUANTIZED_RULES, RULES, Match, Miss
from ..rules.guards import BIAS_INPUT, unsupported_geometry, unsupported_layer
from ..rules.quantized import grouped_reason, is_quantized_layer
from ..selection import LayerSelection
from ..summary import LayerRewrite, LeftAlone
from .base import GraphPass, PassResult

COUNTERS_SHAPE = [len(op.COUNTER_NAMES)]


@dataclass
class FusionResult(PassResult):
    rewritten: list[LayerRewrite] = field(default_factory=list)
    left_alone: list[LeftAlone] = field(default_factory=list)


def layer_outcome(node: gs.Node, ctx: GraphContext) -> Match | str:
    """What becomes of layer ``node``: a rule's match, or why it is left alone."""
    if is_quantized_layer(node):
        return unsupported_geometry(node, ctx) or grouped_reason(node) or best_match(node, ctx, QUANTIZED_RULES)
    return unsupported_layer(node, ctx) or best_match(node, ctx, RULES)


def best_match(node: gs.Node, ctx: GraphContext, rules=RULES) -> Match | str:
    """The first of ``rules`` that matches ``node``, or the reason of the rule that got furthest."""
    misses = []
    for rule in rules:
        domain, op_type = rule.anchor
        if not is_op(node, op_type, domain):
            continue
        outcome = rule.match(node, ctx)
        if isinstance(outcome, Match):
            return outcome
        misses.append(outcome)
    return _explain(misses)


def _explain(misses: list[Miss]) -> str:
    # A rule that failed a check explains more than one that met another op at the same depth;
    # when every deepest miss met the same unexpected op, say which ops would have matched.
    deepest = max(misses, key=lambda m: (m.depth, m.expected is None))
    if deepest.expected is None:
        return deepest.reason
    expected = list(dict.fromkeys(m.expected for m in misses if m.depth == deepest.depth))
    wanted = ", ".join(expected[:-1]) + (" or " if len(expected) > 1 else "") + expected[-1]
    return f"no activation after it: {deepest.reason}, not {wanted}"


class FusePredictiveConv(GraphPass):
    description = "layers rewritten"

    def __init__(self, selection: LayerSelection, *, scales: Optional[Mapping[str, float]] = None,
                 audit: bool = False, expose_counters: bool = False):
        super().__init__()
        self.selection = selection
        self.scales = scales
        self.audit = audit
        self.expose_counters = expose_counters

    def call(self, ctx: GraphContext) -> FusionResult:
        layers = ctx.convs()
        macs = {id(node): dense_macs_per_image(ctx, node) for node in layers}
        reasons: dict[int, str] = {}
        matches: list[Match] = []
        for node in layers:
            outcome = self.selection.skip_reason(node.name) or layer_outcome(node, ctx)
            if isinstance(outcome, Match):
                matches.append(outcome)
            else:
                reasons[id(node)] = outcome
        accepted = self._resolve_shared_nodes(matches, macs, reasons)

        result = FusionResult()
        for node in layers:
            if id(node) in reasons:
                result.left_alone.append(LeftAlone(node.name, node.op, reasons[id(node)], macs[id(node)]))
                continue
            match = accepted[id(node)]
            predictor = self.selection.predictor_for(node.name)
            attributes = predictor.attributes(node.name, self.scales)
            result.rewritten.append(LayerRewrite(node.name, match.pattern, _shape(node.inputs[0]), _shape(match.output),
                                                 macs[id(node)], predictor, attributes["margin"]))
            ctx.replace_nodes(match.nodes, self._predictive_conv(ctx, match, attributes))
            result.record(f"{node.name}: {match.pattern}")
        if result.modified:
            ctx.graph.cleanup()  # Clip bounds and weights only the replaced nodes read
        return result

    @staticmethod
    def _resolve_shared_nodes(matches: list[Match], macs: dict, reasons: dict) -> dict[int, Match]:
        """Matches that share no node, preferring the larger conv; the others get a reason."""
        claimed: dict[int, str] = {}
        accepted = {}
        for match in sorted(matches, key=lambda m: -(macs[id(m.conv)] or 0)):  # stable: ties keep graph order
            owner = next((claimed[id(n)] for n in match.nodes if id(n) in claimed), None)
            if owner is not None:
                shared = match.pattern.split("->", 1)[1]
                reasons[id(match.conv)] = f"its {shared} is fused into {owner!r} (one conv per Add: the one with most MACs)"
                continue
            claimed.update((id(n), match.conv.name) for n in match.nodes)
            accepted[id(match.conv)] = match
        return accepted

    def _predictive_conv(self, ctx: GraphContext, match: Match, predictor_attributes: dict) -> gs.Node:
        conv = match.conv
        if match.quantized_inputs is not None:
            op_type, inputs = op.QLINEAR_OP_TYPE, list(match.quantized_inputs)
            activation = {}
        else:
            op_type, inputs = op.OP_TYPE, self._float_inputs(ctx, match)
            activation = dict(activation=match.activation.kind, clip_max=match.activation.clip_max)
        outputs = [match.output]
        if self.expose_counters:
            counters = gs.Variable(ctx.claim_tensor_name(f"{conv.name}.counters"), np.int64, COUNTERS_SHAPE)
            outputs.append(counters)
            ctx.graph.outputs.append(counters)
        proto = op.make_node(
            [t.name for t in inputs],
            [t.name for t in outputs],
            name=conv.name,
            op_type=op_type,
            kernel_shape=weight_shape(ctx, conv)[2:],
            **conv_attributes(conv, spatial_rank=2),
            **predictor_attributes,
            **activation,
            audit=self.audit,
        )
        attrs = {a.name: _decoded(helper.get_attribute_value(a)) for a in proto.attribute}
        return gs.Node(op=op_type, name=conv.name, attrs=attrs, inputs=inputs, outputs=outputs, domain=op.DOMAIN)

    @staticmethod
    def _float_inputs(ctx: GraphContext, match: Match) -> list[gs.Tensor]:
        """PredictiveConv's X, W[, B][, Z] ("" for B when only Z is given)."""
        conv = match.conv
        has_bias = len(conv.inputs) > BIAS_INPUT and conv.inputs[BIAS_INPUT].name
        bias = ctx.as_initializer(conv.inputs[BIAS_INPUT]) if has_bias else gs.Variable.empty()
        inputs = [conv.inputs[0], ctx.as_initializer(conv.inputs[1]), bias]
        if match.residual is not None:
            inputs.append(match.residual)
        elif not has_bias:
            inputs.pop()
        return inputs


def _decoded(value):
    return value.decode() if isinstance(value, bytes) else value


def _shape(tensor: gs.Tensor) -> Optional[tuple]:
    return None if tensor.shape is None else tuple(tensor.shape)
