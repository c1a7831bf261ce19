"""Fold an inference-mode BatchNormalization into the Conv before it.

BatchNormalization(y) = γ·(y − μ)/√(σ² + ε) + β with y = conv(x, W) + b is a per-channel affine map,
so with s = γ/√(σ² + ε) (one value per output channel m):

    W'[m] = s[m]·W[m],   b'[m] = s[m]·(b[m] − μ[m]) + β[m]

and conv(x, W') + b' equals the BatchNormalization's output. Folded in float64, stored in the
weights' type. Applies when the Conv's output feeds only this BatchNormalization (and is not a graph
output), the Conv's weights and bias and all four statistics are constants, and the node computes
a single output (inference mode).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import onnx_graphsurgeon as gs

from ..graph import GraphContext, is_op
from .base import GraphPass, PassResult

DEFAULT_EPSILON = 1e-5


class FoldBatchNorm(GraphPass):
    description = "BatchNormalization folded"

    def call(self, ctx: GraphContext) -> PassResult:
        result = PassResult()
        for conv in ctx.convs():
            if not is_op(conv, "Conv") or not self.in_scope(conv):
                continue
            batch_norm = ctx.sole_consumer(conv.outputs[0], "Conv output")
            if isinstance(batch_norm, str) or not is_op(batch_norm, "BatchNormalization"):
                continue
            folded = self._folded_parameters(ctx, conv, batch_norm)
            if folded is None:
                continue
            weights, bias = folded
            conv.inputs[1] = ctx.new_constant(f"{conv.name}.weight_bn_folded", weights)
            if len(conv.inputs) > 2:
                conv.inputs[2] = ctx.new_constant(f"{conv.name}.bias_bn_folded", bias)
            else:
                conv.inputs.append(ctx.new_constant(f"{conv.name}.bias_bn_folded", bias))
            output = batch_norm.outputs[0]
            ctx.remove_node(batch_norm)
            conv.outputs[0] = output
            result.record(f"{batch_norm.name or 'BatchNormalization'} folded into {conv.name}")
        return result

    @staticmethod
    def _folded_parameters(
        ctx: GraphContext, conv: gs.Node, batch_norm: gs.Node
    ) -> Optional[tuple[np.ndarray, np.ndarray]]:
        if len(batch_norm.outputs) != 1 or batch_norm.attrs.get("training_mode", 0):
            return None
        if batch_norm.attrs.get("spatial", 1) != 1:  # opset < 9: spatial=0 normalises per position
            return None
        statistics = [ctx.constant_value(t) for t in batch_norm.inputs[1:5]]
        weights = ctx.constant_value(conv.inputs[1])
        has_bias = len(conv.inputs) > 2 and conv.inputs[2].name
        bias = ctx.constant_value(conv.inputs[2]) if has_bias else np.zeros(1)
        if weights is None or bias is None or any(v is None for v in statistics):
            return None
        channels = weights.shape[0]
        if any(v.shape != (channels,) for v in statistics) or (has_bias and bias.shape != (channels,)):
            return None
        gamma, beta, mean, variance = (v.astype(np.float64) for v in statistics)
        epsilon = float(batch_norm.attrs.get("epsilon", DEFAULT_EPSILON))
        scale = gamma / np.sqrt(variance + epsilon)
        folded_weights = weights.astype(np.float64) * scale.reshape(-1, *[1] * (weights.ndim - 1))
        folded_bias = (bias.astype(np.float64) - mean) * scale + beta
        return folded_weights.astype(weights.dtype), folded_bias.astype(weights.dtype)
