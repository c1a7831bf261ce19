"""Replace a Conv's ``auto_pad`` by the explicit ``pads`` it stands for (PredictiveConv has no auto_pad).

Per spatial axis with input size i, stride s, kernel size k and dilation d:

    VALID:       pads 0, 0
    SAME_UPPER:  o = ⌈i / s⌉,  total = max(0, (o − 1)·s + (k − 1)·d + 1 − i),
                 begin = ⌊total / 2⌋, end = total − begin   (the odd pixel at the end)
    SAME_LOWER:  the same total, begin = ⌈total / 2⌉          (the odd pixel at the start)

SAME needs the input's spatial size, so it stays unresolved (and the layer is left alone) when shape
inference could not fix it.
"""

from __future__ import annotations

from typing import Optional

import onnx_graphsurgeon as gs

from ..graph import GraphContext, conv_attributes, weight_shape
from .base import GraphPass, PassResult


def explicit_pads(auto_pad: str, input_size, kernel, strides, dilations) -> Optional[list[int]]:
    """ONNX pads ``[begin..., end...]`` for ``auto_pad``, or None when the input size is unknown."""
    if auto_pad == "VALID":
        return [0] * (2 * len(kernel))
    if not all(isinstance(size, int) for size in input_size):
        return None
    begins, ends = [], []
    for size, k, s, d in zip(input_size, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return begins + ends


class ResolveAutoPad(GraphPass):
    description = "auto_pad resolved"

    def call(self, ctx: GraphContext) -> PassResult:
        result = PassResult()
        for conv in ctx.convs():
            auto_pad = conv.attrs.get("auto_pad", "NOTSET")
            if auto_pad == "NOTSET" or not self.in_scope(conv):
                continue
            pads = self._pads(ctx, conv, auto_pad)
            if pads is None:
                continue
            del conv.attrs["auto_pad"]
            conv.attrs["pads"] = pads
            result.record(f"{conv.name}: auto_pad {auto_pad} -> pads {pads}")
        return result

    @staticmethod
    def _pads(ctx: GraphContext, conv: gs.Node, auto_pad: str) -> Optional[list[int]]:
        w_shape = weight_shape(ctx, conv)
        x_shape = conv.inputs[0].shape
        if w_shape is None or x_shape is None or len(x_shape) != len(w_shape):
            return None
        spatial_rank = len(w_shape) - 2
        attrs = conv_attributes(conv, spatial_rank)
        return explicit_pads(auto_pad, x_shape[2:], w_shape[2:], attrs["strides"], attrs["dilations"])
