"""Order each rewritten layer's output channels by how often they are active.

A layer computes its rest outputs by blocks of channels (64 a block in the int8 op): a window skips a
block only where none of its channels is kept, and gathering a few kept channels costs more per output
than computing the block. Channels in their trained order mix rarely and often active ones in every
block; ordered by activity, the rarely active ones share blocks that windows skip whole (VGG-16 int8 at
k = 3: 1.18x -> 1.20-1.22x onnxruntime's int8 model end to end, ResNet-18 int8 1.04x -> 1.07x; Lite0 int8
alike, its depthwise readers keeping the order). A permutation π of a layer's
outputs changes nothing the model computes, provided every reader undoes it:

    y' = conv(x; W[π], B[π]) = y[π]                  (per-channel w_scale, w_zero_point too)
    f(y[π]) = f(y)[π]                                 f channel-wise: Relu, Clip, MaxPool, AveragePool,
                                                      Identity, per-tensor QuantizeLinear/DequantizeLinear
    conv(v[π]; W'[:, π]) = conv(v; W')               the reading Conv, group 1

so a layer is ordered only where its output reaches nothing but channel-wise nodes and the X input of
convs (rewritten or not, group 1) whose weights are constants; the rest keep their order. int8 sums are
exact in any order; float32 ones may differ in the last bits.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ... import op
from ..graph import GraphContext, is_op
from .base import GraphPass, PassResult

CHANNELWISE = ("Relu", "Clip", "MaxPool", "AveragePool", "Identity")
QUANTIZATION = ("QuantizeLinear", "DequantizeLinear")
# When no layer's activity could be measured (every activation fused into a QLinearConv of the original).
UNOBSERVABLE_ACTIVITY = ("channels kept in their order: no rewritten layer's pre-activation can be observed in the "
                         "original")


def ordered_by_default(rewritten: onnx.ModelProto) -> bool:
    """Whether ``bench`` and ``tune`` order channels when not told: for a model with int8 layers
    (PredictiveQLinearConv), whose sums are exact in any order, so that the order changes no output and
    pays (above). Float32 sums may change in their last bits and its kernels gained nothing from the
    order, so float models keep theirs unless asked."""
    return op.has_quantized_layers(rewritten)


class OrderChannels(GraphPass):
    description = "layers' channels ordered by activity"
    kept_description = "kept in channel order"

    def __init__(self, activity: Mapping[str, Sequence[float]], **kwargs):
        """``activity``: per layer name, each output channel's share of active outputs."""
        super().__init__(**kwargs)
        self.activity = activity
        self.kept: list[str] = []  # "<layer>: why", for the layers given an activity but left in order

    def call(self, ctx: GraphContext) -> PassResult:
        result = PassResult()
        for node in list(ctx.graph.nodes):
            if not op.is_contract_op(node) or node.name not in self.activity or not self.in_scope(node):
                continue
            order = np.argsort(np.asarray(self.activity[node.name], dtype=np.float64), kind="stable")
            readers = _readers(ctx, node, len(order))
            if isinstance(readers, str):
                self.kept.append(f"{node.name}: {readers}")
                continue
            if np.array_equal(order, np.arange(len(order))):
                continue
            for index in _output_channel_inputs(node):
                if np.size(node.inputs[index].values) > 1:  # not a per-tensor w_scale or w_zero_point
                    _permute(node.inputs[index], order, axis=0)
            for reader in readers:
                _permute(_weight_constant(ctx, reader), order, axis=1)
            result.record(f"{node.name}: ordered, and the input channels of {', '.join(r.name for r in readers)}")
        return result


def _output_channel_inputs(node: gs.Node) -> list[int]:
    """The present inputs of a rewritten layer that can run along its output channels."""
    names, along = ((op.QLINEAR_INPUT_NAMES, ("w", "w_scale", "w_zero_point", "B"))
                    if op.is_predictive_qlinear_conv(node) else (op.INPUT_NAMES, ("W", "B")))
    return [i for i, name in enumerate(names) if name in along and i < len(node.inputs) and node.inputs[i].name]


def _readers(ctx: GraphContext, node: gs.Node, channels: int) -> list[gs.Node] | str:
    """The convs that read ``node``'s channels through channel-wise nodes, or why its output channels
    cannot be permuted."""
    if int(node.attrs.get("group", 1)) != 1:
        return "a grouped layer"
    residual = op.INPUT_NAMES.index("Z")
    if op.is_predictive_conv(node) and len(node.inputs) > residual and node.inputs[residual].name:
        return "it adds a residual Z"
    own = [node.inputs[i] for i in _output_channel_inputs(node)]
    if not all(_sole_constant(ctx, t) for t in own):
        return "its weights are not its own constants"
    if np.shape(own[0].values)[0] != channels:
        return f"{channels} activities for {np.shape(own[0].values)[0]} channels"
    readers, pending = [], [node.outputs[0]]
    while pending:
        tensor = pending.pop()
        if ctx.is_graph_output(tensor):
            return f"{tensor.name} is a graph output"
        for reader in tensor.outputs:
            why = _reader_problem(ctx, reader, tensor)
            if why:
                return why
            if _weight_input(reader) is None:
                pending.append(reader.outputs[0])
            else:
                readers.append(reader)
    return readers or "nothing reads it"


def _reader_problem(ctx: GraphContext, reader: gs.Node, tensor: gs.Tensor) -> Optional[str]:
    """Why ``reader`` (reading ``tensor``) does not carry a channel permutation through, None if it does."""
    what = f"{reader.name} ({reader.op})"
    convolution = is_op(reader, "Conv") or op.is_contract_op(reader)
    channelwise = reader.op in CHANNELWISE and reader.domain in (None, "", "ai.onnx")
    if not (convolution or channelwise or reader.op in QUANTIZATION):
        return f"{what} is not channel-wise"
    if reader.inputs[0] is not tensor or any(t is tensor for t in reader.inputs[1:]):
        return f"{what} reads it other than as its data input"
    if convolution:
        if int(reader.attrs.get("group", 1)) != 1:
            return f"{what} is grouped"
        return None if _weight_constant(ctx, reader) is not None else f"{what} has weights not its own constant"
    if reader.op in QUANTIZATION:
        parameters = [ctx.constant_value(t) for t in reader.inputs[1:] if t.name]
        if all(value is not None and value.size == 1 for value in parameters):
            return None
        return f"{what} has per-channel or variable parameters"
    if any(out.outputs or ctx.is_graph_output(out) for out in reader.outputs[1:]):
        return f"{what} has a second output in use"
    return None


def _weight_input(reader: gs.Node) -> Optional[int]:
    """The input holding a reading conv's W, None for a channel-wise node."""
    if op.is_predictive_qlinear_conv(reader):
        return op.QLINEAR_INPUT_NAMES.index("w")
    if op.is_predictive_conv(reader) or is_op(reader, "Conv"):
        return 1
    return None


def _weight_constant(ctx: GraphContext, conv: gs.Node) -> Optional[gs.Constant]:
    """A reading conv's W as a constant it alone uses: its own initializer, or that of the
    DequantizeLinear feeding it (a quantized graph's int8 weights, quantized along axis 0)."""
    weights = conv.inputs[_weight_input(conv)]
    if isinstance(weights, gs.Constant):
        return weights if _sole_constant(ctx, weights) else None
    producer = weights.inputs[0] if len(weights.inputs) == 1 else None
    if producer is None or not is_op(producer, "DequantizeLinear") or len(weights.outputs) != 1:
        return None
    quantized = producer.inputs[0]
    if not _sole_constant(ctx, quantized):
        return None
    # Its scale runs along output channels (axis 0) or is one value: input channels permute freely.
    scale = ctx.constant_value(producer.inputs[1])
    per_output_channel = int(producer.attrs.get("axis", 1)) == 0
    return quantized if per_output_channel or (scale is not None and scale.size == 1) else None


def _sole_constant(ctx: GraphContext, tensor: gs.Tensor) -> bool:
    """Whether ``tensor`` is a constant that one node alone reads, so permuting it changes nothing else."""
    return isinstance(tensor, gs.Constant) and len(tensor.outputs) == 1 and ctx.is_constant(tensor)


def _permute(constant: gs.Constant, order: np.ndarray, *, axis: int) -> None:
    constant.values = np.ascontiguousarray(np.take(np.asarray(constant.values), order, axis=axis))
