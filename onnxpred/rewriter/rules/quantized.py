"""What the quantized patterns share: reading a quantized layer's operands and checking that
``ai.onnxpred::PredictiveQLinearConv`` can take them.

A quantized tensor t_q stands for the real values (t_q − zero_point)·scale. PredictiveQLinearConv
computes, in QLinearConv's input order (x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp[, B]),

    acc[m] = Σ (x_q − x_zp)·w_q[m] + B[m]                  (int32; B of scale x_scale·w_scale[m])
    Y[m]   = sat(max(round(acc[m]·x_scale·w_scale[m] / y_scale) + y_zp, y_zp))

that is Relu then QuantizeLinear. It takes int8 weights with all-zero zero points (symmetric, per
tensor or per output channel along axis 0), uint8 or int8 activations with one scale and zero point
(a scalar each), all of them constants, so that the kernel packs the weights once. Anything else
leaves the layer alone, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import onnx_graphsurgeon as gs

from ..graph import GraphContext, is_op, weight_tensor

ACTIVATION_TYPES = (np.uint8, np.int8)
# DequantizeLinear's axis, which per-channel weights must use for their output channels.
DEFAULT_AXIS = 1


def type_minimum(dtype) -> int:
    return int(np.iinfo(dtype).min)


def type_maximum(dtype) -> int:
    return int(np.iinfo(dtype).max)


@dataclass(frozen=True)
class InputOperands:
    """What a quantized layer reads: x with its quantization, the weights with theirs, the bias (or None)."""

    x: gs.Tensor
    x_scale: gs.Constant
    x_zero_point: gs.Constant
    w: gs.Constant
    w_scale: gs.Constant
    w_zero_point: gs.Constant
    bias: Optional[gs.Constant]

    def op_inputs(self, y_scale: gs.Constant, y_zero_point: gs.Constant) -> tuple[gs.Tensor, ...]:
        """PredictiveQLinearConv's inputs, in its order, for an output quantized with these."""
        inputs = (self.x, self.x_scale, self.x_zero_point, self.w, self.w_scale, self.w_zero_point,
                  y_scale, y_zero_point)
        return inputs + ((self.bias,) if self.bias is not None else ())


def is_quantized_layer(conv: gs.Node) -> bool:
    """A QLinearConv, or a Conv whose weights are dequantized (QDQ format): the layers the quantized rules
    handle. A Conv with float weights goes to the float rules, even on a dequantized X."""
    if is_op(conv, "QLinearConv"):
        return True
    return is_op(conv, "Conv") and _producer(conv.inputs[1], "DequantizeLinear") is not None


def grouped_reason(conv: gs.Node) -> Optional[str]:
    """Why a quantized layer's group rules it out, or None: PredictiveQLinearConv v1 is ungrouped."""
    group = int(conv.attrs.get("group", 1))
    if group != 1:
        kind = "depthwise" if _is_depthwise(conv) else "grouped"
        return f"{kind} conv (group {group}; PredictiveQLinearConv v1 takes ungrouped convs)"
    return None


def _is_depthwise(conv: gs.Node) -> bool:
    shape = weight_tensor(conv).shape
    return shape is not None and len(shape) == 4 and shape[1] == 1


def _producer(tensor: gs.Tensor, op_type: str) -> Optional[gs.Node]:
    producers = tensor.inputs
    return producers[0] if len(producers) == 1 and is_op(producers[0], op_type) else None


def _constant(ctx: GraphContext, tensor: gs.Tensor, what: str) -> gs.Constant | str:
    """``tensor`` as an initializer, or why it cannot be one."""
    if not tensor.name:
        return f"{what} is missing"
    if not ctx.is_constant(tensor):
        return f"{what} is not a constant"
    return ctx.as_initializer(tensor)


def _scalar(ctx: GraphContext, tensor: gs.Tensor, what: str, dtypes: tuple) -> gs.Constant | str:
    """A constant of one value (a scalar, or one element of any shape, written back as a scalar)."""
    constant = _constant(ctx, tensor, what)
    if isinstance(constant, str):
        return constant
    values = np.asarray(constant.values)
    if values.dtype not in [np.dtype(d) for d in dtypes]:
        return f"{what} is {values.dtype.name}, not {' or '.join(np.dtype(d).name for d in dtypes)}"
    if values.size != 1:
        return f"{what} has {values.size} values, not one (quantized per channel)"
    if values.dtype == np.float32 and not _positive_finite(values):
        return f"{what} is not positive and finite"
    return constant if values.ndim == 0 else ctx.new_constant(constant.name, values.reshape(()))


def _per_channel(ctx: GraphContext, tensor: gs.Tensor, what: str, dtype, channels: int) -> gs.Constant | str:
    """A constant of one value or one per output channel (size-1 ones written back as scalars)."""
    constant = _constant(ctx, tensor, what)
    if isinstance(constant, str):
        return constant
    values = np.asarray(constant.values)
    if values.dtype != np.dtype(dtype):
        return f"{what} is {values.dtype.name}, not {np.dtype(dtype).name}"
    if values.dtype == np.float32 and not _positive_finite(values):
        return f"{what} is not positive and finite"
    if values.size == 1:
        return constant if values.ndim == 0 else ctx.new_constant(constant.name, values.reshape(()))
    if values.shape != (channels,):
        return f"{what} has shape {list(values.shape)}, not [] or [{channels}]"
    return constant


def _positive_finite(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values) & (values > 0)))


def _zero_point_or_zeros(ctx: GraphContext, node: gs.Node, index: int, dtype, what: str) -> gs.Constant | str:
    """A (De)QuantizeLinear's zero point; an omitted one is 0 of ``dtype``."""
    if len(node.inputs) > index and node.inputs[index].name:
        return _scalar(ctx, node.inputs[index], what, ACTIVATION_TYPES)
    if dtype is None:
        return f"{what} is missing and its type unknown"
    return ctx.new_constant(f"{node.name or what}_zero_point", np.zeros((), dtype))


def output_quantization(ctx: GraphContext, scale: gs.Tensor, zero_point: gs.Tensor
                        ) -> tuple[gs.Constant, gs.Constant] | str:
    """y_scale and y_zero_point as the op takes them, or why not."""
    y_scale = _scalar(ctx, scale, "y_scale", (np.float32,))
    if isinstance(y_scale, str):
        return y_scale
    y_zero_point = _scalar(ctx, zero_point, "y_zero_point", ACTIVATION_TYPES) if zero_point.name else \
        "y_zero_point is missing"
    if isinstance(y_zero_point, str):
        return y_zero_point
    return y_scale, y_zero_point


def relu_like_reason(y_zero_point: gs.Constant) -> Optional[str]:
    """Why an output quantized with ``y_zero_point`` and no activation is not Relu-like, or None.

    sat(round(P / y_scale) + y_zp) equals the op's clamp max(·, y_zp) only when nothing below y_zp
    can be represented, that is y_zp is the type's minimum: the quantizer's range starts at real 0.
    """
    values = np.asarray(y_zero_point.values)
    if int(values) != type_minimum(values.dtype):
        return (f"no activation: y_zero_point {int(values)} is not {values.dtype.name}'s minimum "
                f"{type_minimum(values.dtype)} (the output represents negative values)")
    return None


def check_weights(ctx: GraphContext, w: gs.Tensor, w_scale: gs.Tensor, w_zero_point: Optional[gs.Tensor],
                  per_channel_axis: int = 0) -> tuple[gs.Constant, gs.Constant, gs.Constant] | str:
    """int8 constant weights [M, C/group, kH, kW] with a scale and an all-zero zero point of one value
    or one per output channel (``per_channel_axis`` must then be 0)."""
    weights = _operand(ctx, w, "W", "weights", np.int8)
    if isinstance(weights, str):
        return weights
    channels = np.asarray(weights.values).shape[0]
    scale = _per_channel(ctx, w_scale, "w_scale", np.float32, channels)
    if isinstance(scale, str):
        return scale
    if w_zero_point is None or not w_zero_point.name:
        zero_point = ctx.new_constant(f"{weights.name}_zero_point", np.zeros((), np.int8))
    else:
        zero_point = _per_channel(ctx, w_zero_point, "w_zero_point", np.int8, channels)
        if isinstance(zero_point, str):
            return zero_point
        if np.any(np.asarray(zero_point.values) != 0):
            return "w_zero_point is not all zero (PredictiveQLinearConv takes symmetric weights)"
    if np.asarray(scale.values).ndim == 1 and per_channel_axis != 0:
        return f"W is quantized along axis {per_channel_axis}, not 0 (its output channels)"
    return weights, scale, zero_point


def check_bias(ctx: GraphContext, bias: gs.Tensor, channels: int) -> gs.Constant | str:
    """A constant int32 bias [M] (of scale x_scale·w_scale, which QLinearConv assumes)."""
    constant = _operand(ctx, bias, "B", "bias", np.int32)
    if isinstance(constant, str):
        return constant
    shape = np.asarray(constant.values).shape
    if shape != (channels,):
        return f"the bias has shape {list(shape)}, not [{channels}]"
    return constant


def _operand(ctx: GraphContext, tensor: gs.Tensor, name: str, role: str, dtype) -> gs.Constant | str:
    """W or B: a constant of ``dtype``, which the kernel packs once."""
    constant = _constant(ctx, tensor, name)
    if isinstance(constant, str):
        return f"dynamic {role} ({name} is not a constant)" if constant.endswith("constant") else constant
    found = np.asarray(constant.values).dtype
    if found != np.dtype(dtype):
        return f"{found.name} {role} (PredictiveQLinearConv takes {np.dtype(dtype).name})"
    return constant


def bias_scale_reason(ctx: GraphContext, dequantize: gs.Node, x_scale: gs.Constant, w_scale: gs.Constant
                      ) -> Optional[str]:
    """Why a bias dequantized by ``dequantize`` is not the int32 bias of scale x_scale·w_scale with zero
    point 0 that QLinearConv adds, or None."""
    scale = ctx.constant_value(dequantize.inputs[1])
    expected = np.float32(np.asarray(x_scale.values)) * np.asarray(w_scale.values, np.float32)
    if scale is None:
        return "the bias scale is not a constant"
    scale, expected = np.reshape(scale, -1), np.reshape(expected, -1)
    # The quantizer rounds the product to float32; anything further off is another bias.
    if len(scale) not in (1, len(expected)) or not np.allclose(scale, expected, rtol=1e-6, atol=0):
        return "the bias scale is not x_scale * w_scale"
    if len(dequantize.inputs) > 2 and dequantize.inputs[2].name:
        zero_point = ctx.constant_value(dequantize.inputs[2])
        if zero_point is None or np.any(zero_point != 0):
            return "the bias zero point is not 0"
    return None


def qdq_operands(conv: gs.Node, ctx: GraphContext) -> InputOperands | str:
    """The operands of a Conv in QDQ format, read through the DequantizeLinear nodes of X, W and B,
    or why they do not qualify."""
    x_dq = _producer(conv.inputs[0], "DequantizeLinear")
    w_dq = _producer(conv.inputs[1], "DequantizeLinear")
    if x_dq is None:
        return "X is float (not from a DequantizeLinear) while W is quantized"
    x = x_dq.inputs[0]
    x_scale = _scalar(ctx, x_dq.inputs[1], "x_scale", (np.float32,))
    if isinstance(x_scale, str):
        return x_scale
    x_zero_point = _zero_point_or_zeros(ctx, x_dq, 2, _dtype(x), "x_zero_point")
    if isinstance(x_zero_point, str):
        return x_zero_point
    weights = check_weights(ctx, w_dq.inputs[0], w_dq.inputs[1], w_dq.inputs[2] if len(w_dq.inputs) > 2 else None,
                            int(w_dq.attrs.get("axis", DEFAULT_AXIS)))
    if isinstance(weights, str):
        return weights
    bias = None
    if len(conv.inputs) > 2 and conv.inputs[2].name:
        b_dq = _producer(conv.inputs[2], "DequantizeLinear")
        if b_dq is None:
            return "float bias (not int32 through a DequantizeLinear)"
        bias = check_bias(ctx, b_dq.inputs[0], np.asarray(weights[0].values).shape[0])
        if isinstance(bias, str):
            return bias
        reason = bias_scale_reason(ctx, b_dq, x_scale, weights[1])
        if reason:
            return reason
    return InputOperands(x, x_scale, x_zero_point, *weights, bias)


def qlinear_operands(node: gs.Node, ctx: GraphContext) -> InputOperands | str:
    """The operands of a QLinearConv (x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
    y_zero_point[, B]), or why they do not qualify; per-channel w_scale is along axis 0 by definition."""
    inputs = list(node.inputs) + [gs.Variable.empty()] * (9 - len(node.inputs))
    x_scale = _scalar(ctx, inputs[1], "x_scale", (np.float32,))
    if isinstance(x_scale, str):
        return x_scale
    x_zero_point = _scalar(ctx, inputs[2], "x_zero_point", ACTIVATION_TYPES)
    if isinstance(x_zero_point, str):
        return x_zero_point
    weights = check_weights(ctx, inputs[3], inputs[4], inputs[5])
    if isinstance(weights, str):
        return weights
    bias = None
    if inputs[8].name:
        bias = check_bias(ctx, inputs[8], np.asarray(weights[0].values).shape[0])
        if isinstance(bias, str):
            return bias
    return InputOperands(inputs[0], x_scale, x_zero_point, *weights, bias)


def _dtype(tensor: gs.Tensor):
    return None if tensor.dtype is None else np.dtype(tensor.dtype)
