"""Run the int8 layers channels last (NHWC), as onnxruntime runs its own int8 convolutions.

onnxruntime's int8 model at level ALL computes QLinearConv and uint8 MaxPool in NHWC, with one
Transpose at each end of the chain. A PredictiveQLinearConv in NCHW breaks that chain: the pools
around it fall back to onnxruntime's NCHW uint8 MaxPool, 30x slower than its NhwcMaxPool (15 of
96 ms on VGG-16 int8). So, with T = Transpose(perm [0, 2, 3, 1]) and T⁻¹ its inverse,

    PredictiveQLinearConv(x)            = T⁻¹(PredictiveQLinearConv[channels_last=1](T(x)))
    Q(MaxPool(DQ(x; s, z)); s, z)       = T⁻¹(NhwcMaxPool(T(x)))     (max commutes with the
                                                                      monotone (de)quantization)
    T⁻¹(T(v)) = v, T(T⁻¹(v)) = v

and the inverse pairs that meet between two layers are removed, leaving a Transpose where an NHWC
tensor meets an NCHW reader. Names: the NCHW tensors keep theirs (graph outputs and every other
reader see what they saw); the NHWC ones are new.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import onnx_graphsurgeon as gs

from ... import op
from ..graph import GraphContext, is_op
from .base import GraphPass, PassResult

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
MICROSOFT_DOMAIN = "com.microsoft"
# The MaxPool attributes NhwcMaxPool takes (it has no storage_order: the Indices output is not supported).
NHWC_MAXPOOL_ATTRIBUTES = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")


class ChannelsLast(GraphPass):
    description = "channels-last edits"

    def call(self, ctx: GraphContext) -> PassResult:
        result = PassResult()
        layers = [node for node in ctx.graph.nodes if op.is_predictive_qlinear_conv(node) and self.in_scope(node)
                  and not node.attrs.get("channels_last", 0)]  # a model rewritten before keeps its own
        if not layers:
            return result
        for node in layers:
            node.attrs["channels_last"] = 1
            _wrap(ctx, node)
        for dequantize, pool, quantize in _quantized_max_pools(ctx):
            nhwc_pool = gs.Node("NhwcMaxPool", ctx.unique_node_name(pool.name or "NhwcMaxPool"),
                                domain=MICROSOFT_DOMAIN,
                                attrs={k: v for k, v in pool.attrs.items() if k in NHWC_MAXPOOL_ATTRIBUTES},
                                inputs=[dequantize.inputs[0]], outputs=list(quantize.outputs))
            quantize.outputs.clear()
            ctx.replace_nodes([dequantize, pool, quantize], nhwc_pool)
            _wrap(ctx, nhwc_pool)
            result.record(f"{pool.name or 'MaxPool'} (8-bit) as NhwcMaxPool")
        removed = _remove_inverse_pairs(ctx)
        for node in layers:
            result.record(f"{node.name} channels last")
        if removed:
            result.record(f"{removed} Transpose pairs between channels-last nodes removed")
        return result


def _wrap(ctx: GraphContext, node: gs.Node) -> None:
    """``node`` reads T(x) and writes T(y), with x and y its NCHW input and output (names kept)."""
    x, y = node.inputs[0], node.outputs[0]
    x_nhwc = gs.Variable(ctx.unique_tensor_name(f"{x.name}_nhwc"), dtype=x.dtype, shape=_permuted(x.shape, TO_NHWC))
    y_nhwc = gs.Variable(ctx.unique_tensor_name(f"{y.name}_nhwc"), dtype=y.dtype, shape=_permuted(y.shape, TO_NHWC))
    before = gs.Node("Transpose", ctx.unique_node_name(f"{node.name}/to_nhwc"), attrs={"perm": list(TO_NHWC)},
                     inputs=[x], outputs=[x_nhwc])
    node.inputs[0] = x_nhwc
    node.outputs[0] = y_nhwc
    after = gs.Node("Transpose", ctx.unique_node_name(f"{node.name}/to_nchw"), attrs={"perm": list(TO_NCHW)},
                    inputs=[y_nhwc], outputs=[y])
    ctx.surround(node, before, after)


def _permuted(shape, perm) -> Optional[list]:
    return [shape[axis] for axis in perm] if shape is not None and len(shape) == 4 else None


def _quantized_max_pools(ctx: GraphContext) -> list[tuple[gs.Node, gs.Node, gs.Node]]:
    """The 2-D ``DequantizeLinear → MaxPool → QuantizeLinear`` chains of 8-bit tensors whose two
    quantizations are the same constants (the quantizer writes them so), each node the only reader of
    the one before: onnxruntime runs them as one 8-bit MaxPool."""
    chains = []
    for pool in ctx.graph.nodes:
        if not is_op(pool, "MaxPool") or len(pool.outputs) != 1 or pool.attrs.get("storage_order", 0) != 0:
            continue
        dequantize = pool.inputs[0].inputs[0] if pool.inputs[0].inputs else None
        quantize = ctx.sole_consumer(pool.outputs[0], "MaxPool output")
        if dequantize is None or not is_op(dequantize, "DequantizeLinear") or not isinstance(quantize, gs.Node):
            continue
        if not is_op(quantize, "QuantizeLinear") or ctx.sole_consumer(dequantize.outputs[0], "") is not pool:
            continue
        x = dequantize.inputs[0]
        if x.dtype not in (np.uint8, np.int8) or x.shape is None or len(x.shape) != 4:
            continue
        if len(dequantize.inputs) != 3 or len(quantize.inputs) != 3:
            continue  # a zero point left out means 0 of uint8: not worth the special case
        same = all(_equal_constants(ctx, dequantize.inputs[i], quantize.inputs[i]) for i in (1, 2))
        if same and quantize.outputs[0].dtype == x.dtype:
            chains.append((dequantize, pool, quantize))
    return chains


def _equal_constants(ctx: GraphContext, a: gs.Tensor, b: gs.Tensor) -> bool:
    va, vb = ctx.constant_value(a), ctx.constant_value(b)
    return va is not None and vb is not None and va.dtype == vb.dtype and va.size == 1 and np.array_equal(va, vb)


def _remove_inverse_pairs(ctx: GraphContext) -> int:
    """Readers of T⁻¹(T(v)) or T(T⁻¹(v)) read v; a Transpose left without readers goes. Graph outputs stay."""
    removed = 0
    for second in list(ctx.graph.nodes):
        if not is_op(second, "Transpose") or not second.inputs or not second.inputs[0].inputs:
            continue  # (or removed already, as the first of a pair)
        first = second.inputs[0].inputs[0]
        if not is_op(first, "Transpose") or ctx.is_graph_output(second.outputs[0]):
            continue
        composed = [first.attrs["perm"][axis] for axis in second.attrs["perm"]]
        if composed != list(range(len(composed))):
            continue
        source, result = first.inputs[0], second.outputs[0]
        for reader in list(result.outputs):
            for index, tensor in enumerate(reader.inputs):
                if tensor is result:
                    reader.inputs[index] = source
        ctx.remove_node(second)
        if not first.outputs[0].outputs and not ctx.is_graph_output(first.outputs[0]):
            ctx.remove_node(first)
        removed += 1
    return removed
