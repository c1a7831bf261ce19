"""Fold a zero-valued constant Pad of the spatial axes into the Conv that reads it.

Conv pads its input with zeros, so for a Pad in ``constant`` mode with value 0 that pads only the
spatial axes by non-negative amounts:

    Conv(Pad(x, [0, 0, t, l, 0, 0, b, r]); pads = [t', l', b', r'])
      = Conv(x; pads = [t + t', l + l', b + b', r + r'])

(ONNX orders Pad's pads as all begins then all ends; Conv's the same, spatial axes only). Applies
when the Pad's output feeds only this Conv's data input and the Conv's pads are explicit. Not into a
QLinearConv: it pads with x's zero point, not with 0.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import onnx_graphsurgeon as gs

from ..graph import GraphContext, conv_attributes, is_op
from .base import GraphPass, PassResult

# Pad took pads/value as attributes up to opset 10, as inputs from opset 11 on (axes from 18 on).
PAD_INPUTS_OPSET = 11


class FoldPad(GraphPass):
    description = "Pad folded"

    def call(self, ctx: GraphContext) -> PassResult:
        result = PassResult()
        for conv in ctx.convs():
            pad = conv.inputs[0].inputs[0] if conv.inputs[0].inputs else None
            if pad is None or not is_op(pad, "Pad") or is_op(conv, "QLinearConv") or not self.in_scope(conv):
                continue
            if conv.attrs.get("auto_pad", "NOTSET") != "NOTSET":
                continue  # unresolved (unknown input size): nothing to add the pads to
            if ctx.sole_consumer(pad.outputs[0], "Pad output") is not conv:
                continue
            data_pads = self._spatial_pads(ctx, pad)
            if data_pads is None:
                continue
            spatial_rank = len(data_pads) // 2
            conv_pads = conv_attributes(conv, spatial_rank)["pads"]
            conv.attrs["pads"] = [int(a + b) for a, b in zip(conv_pads, data_pads)]
            conv.inputs[0] = pad.inputs[0]
            ctx.remove_node(pad)
            result.record(f"{pad.name or 'Pad'} folded into {conv.name}")
        return result

    @staticmethod
    def _spatial_pads(ctx: GraphContext, pad: gs.Node) -> Optional[list[int]]:
        """The Pad's spatial pads as ``[begin..., end...]`` if it is a foldable zero pad, else None."""
        if pad.attrs.get("mode", "constant") != "constant":
            return None
        rank = len(pad.inputs[0].shape) if pad.inputs[0].shape is not None else None
        if ctx.opset < PAD_INPUTS_OPSET:
            pads, value, axes = pad.attrs.get("pads"), pad.attrs.get("value", 0.0), None
        else:
            operands = []
            for operand in pad.inputs[1:4]:
                constant = ctx.constant_value(operand) if operand.name else None
                if operand.name and constant is None:
                    return None  # pads, value or axes known only at run time
                operands.append(constant)
            pads, value, axes = (operands + [None] * 3)[:3]
            value = 0.0 if value is None else value
        if pads is None or rank is None or np.any(np.asarray(value) != 0):
            return None
        pads = [int(p) for p in np.asarray(pads).reshape(-1)]
        full = [0] * (2 * rank)
        axes = range(rank) if axes is None else [int(a) % rank for a in np.asarray(axes).reshape(-1)]
        if len(pads) != 2 * len(axes):
            return None
        for i, axis in enumerate(axes):
            full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
        batch_and_channel = full[0:2] + full[rank : rank + 2]
        spatial = full[2:rank] + full[rank + 2 :]
        if any(batch_and_channel) or min(spatial, default=0) < 0:
            return None
        return spatial
