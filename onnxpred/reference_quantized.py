"""NumPy reference of ``ai.onnxpred::PredictiveQLinearConv`` v1: the oracle every C++ path of the int8 op
is tested against, bit for bit (docs/predictive_conv.md, section "PredictiveQLinearConv").

Maths, all of it integer or single float32 operations, so the C++ kernels reproduce it exactly:

    acc[n, m, r, c] = Σ (x − x_zero_point) · w + B[m]          int32 (wrapping, as the hardware's)
    s[m]            = fl32(fl32(x_scale · w_scale[m]) / y_scale)  onnxruntime's QLinearConv output scale
    v               = fl32(fl32(acc) · s[m])
    A               = round_half_even(min(max(v, 0), qmax − y_zero_point)) + y_zero_point

which is onnxruntime's requantization (MlasRequantizeOutput: clamp to the type's range in float, round
to nearest even, add the zero point) followed by Relu's clamp at the quantized zero. A sample counts as
zero when ``acc ≤ T[m]``, the per-channel threshold of :func:`zero_thresholds`; the windows, patterns
and trigger are the float32 op's (:func:`onnxpred.reference.window_rule`). Predicted outputs are
``y_zero_point``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .op import ATTRIBUTES, QLINEAR_OP_TYPE, defaults
from .reference import ConvAttributes, conv2d, prediction_counters, sampling_pattern, window_rule

_DEFAULTS = defaults(QLINEAR_OP_TYPE)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# The longest reduction (C/group)·kH·kW whose products cannot overflow int32: 65,793 · 255 · 128 < 2**31.
MAX_REDUCTION = 65793
ACTIVATION_TYPES = (np.uint8, np.int8)


def output_scales(x_scale: float, w_scale: np.ndarray, y_scale: float, channels: int) -> np.ndarray:
    """s[m] = fl32(fl32(x_scale · w_scale[m]) / y_scale) for every output channel, as onnxruntime's
    QLinearConv computes it (float32, in this order); ``w_scale`` a scalar or [M]."""
    w_scale = np.asarray(w_scale, np.float32).reshape(-1)
    if w_scale.size not in (1, channels):
        raise ValueError(f"w_scale must be a scalar or have {channels} values (one per output channel), "
                         f"got {w_scale.size}")
    for name, value in (("x_scale", x_scale), ("w_scale", w_scale), ("y_scale", y_scale)):
        if not np.all(np.isfinite(value)) or not np.all(np.asarray(value) > 0):
            raise ValueError(f"{name} must be positive and finite, got {value}")
    with np.errstate(over="ignore"):
        scales = (np.float32(x_scale) * w_scale) / np.float32(y_scale)
    if not np.all(np.isfinite(scales)):
        raise ValueError("x_scale * w_scale / y_scale overflows float32")
    return np.broadcast_to(scales, (channels,)).astype(np.float32)


def requantize(acc: np.ndarray, scales: np.ndarray, y_zero_point: int, y_dtype: type) -> np.ndarray:
    """A = round_half_even(min(max(fl32(fl32(acc) · s), 0), qmax − zp)) + zp: onnxruntime's
    requantization then the clamp at the quantized zero; ``acc`` int32 [N, M, oH, oW]."""
    qmax = np.iinfo(y_dtype).max
    v = acc.astype(np.float32) * scales.reshape(1, -1, 1, 1)
    clamped = np.minimum(np.maximum(v, np.float32(0)), np.float32(qmax - y_zero_point))
    return (np.rint(clamped).astype(np.int32) + y_zero_point).astype(y_dtype)


def zero_thresholds(x_scale: float, w_scale: np.ndarray, scales: np.ndarray, y_zero_point: int, y_dtype: type,
                    margin: float) -> np.ndarray:
    """T[m], int64 in [INT32_MIN, INT32_MAX]: a sample of channel m counts as zero when acc ≤ T[m].

    margin 0: the largest int32 acc whose output is the clamp value y_zero_point (fl32(fl32(acc) · s[m])
    ≤ 0.5, which rounds to 0 half to even; every acc when y_zero_point is the type's maximum), found by
    bisection, the requantization being monotone in acc.
    margin > 0: floor(−margin / (x_scale · w_scale[m])) in double precision (margin, x_scale and
    w_scale[m] as float32; the product is exact in double, the quotient rounded once), clamped to the
    int32 range: the real pre-activation acc · x_scale · w_scale[m] is at most −margin.
    """
    channels = scales.size
    if margin > 0:
        product = np.float64(np.float32(x_scale)) * np.broadcast_to(
            np.asarray(w_scale, np.float32).reshape(-1), (channels,)).astype(np.float64)
        thresholds = np.floor(-np.float64(np.float32(margin)) / product)
        return np.clip(thresholds, INT32_MIN, INT32_MAX).astype(np.int64)
    if y_zero_point == np.iinfo(y_dtype).max:
        return np.full(channels, INT32_MAX, np.int64)
    # The largest acc with fl32(fl32(acc) * s) <= 0.5: lo always satisfies it, hi never (or is the end).
    lo = np.full(channels, INT32_MIN, np.int64)
    hi = np.full(channels, INT32_MAX, np.int64)

    def is_zero(acc: np.ndarray) -> np.ndarray:
        return acc.astype(np.int32).astype(np.float32) * scales <= np.float32(0.5)

    done = is_zero(hi)
    lo[done] = hi[done]
    while np.any(hi - lo > 1):
        mid = lo + (hi - lo) // 2
        zero = is_zero(mid)
        lo = np.where(zero, mid, lo)
        hi = np.where(zero, hi, mid)
    return lo


def accumulate(x: np.ndarray, x_zero_point: int, w: np.ndarray, b: Optional[np.ndarray],
               attrs: ConvAttributes) -> np.ndarray:
    """acc = Σ (x − x_zero_point) · w + B, int32 wrapping; padding contributes x_zero_point (i.e. 0)."""
    centred = x.astype(np.int64) - int(x_zero_point)
    exact = np.rint(conv2d(centred, w.astype(np.int64), None, attrs)).astype(np.int64)  # |sums| < 2**53
    if b is not None:
        exact += b.astype(np.int64).reshape(1, -1, 1, 1)
    return exact.astype(np.int32)  # wraps modulo 2**32


def predictive_qlinear_conv(
    x: np.ndarray,
    x_scale: float,
    x_zero_point,
    w: np.ndarray,
    w_scale,
    w_zero_point,
    y_scale: float,
    y_zero_point,
    b: Optional[np.ndarray] = None,
    *,
    strides: Sequence[int] = _DEFAULTS["strides"],
    pads: Sequence[int] = _DEFAULTS["pads"],
    dilations: Sequence[int] = _DEFAULTS["dilations"],
    group: int = _DEFAULTS["group"],
    window: int = _DEFAULTS["window"],
    pattern: str = _DEFAULTS["pattern"],
    margin: float = _DEFAULTS["margin"],
    audit: bool = False,
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """PredictiveQLinearConv on NumPy arrays (QLinearConv's inputs, ``x_zero_point`` and ``y_zero_point``
    NumPy scalars or 0-d/1-element arrays of their types): returns ``(Y, counters int64[7])``, Y of
    y_zero_point's type. The attributes' defaults and ranges are the contract's (:mod:`onnxpred.op`);
    ``channels_last``: x and Y are NHWC, the same arithmetic on the transposed tensors."""
    for name, value in (("window", window), ("pattern", pattern), ("margin", margin)):
        ATTRIBUTES[name].check(value)
    if channels_last:
        y, counters = predictive_qlinear_conv(
            x.transpose(0, 3, 1, 2), x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, b,
            strides=strides, pads=pads, dilations=dilations, group=group, window=window, pattern=pattern,
            margin=margin, audit=audit)
        return np.ascontiguousarray(y.transpose(0, 2, 3, 1)), counters
    x_zp, y_zp = np.asarray(x_zero_point).reshape(-1), np.asarray(y_zero_point).reshape(-1)
    if x.dtype not in ACTIVATION_TYPES or x_zp.dtype != x.dtype or x_zp.size != 1:
        raise ValueError(f"x must be uint8 or int8 and x_zero_point one value of its type; got {x.dtype}, "
                         f"{x_zp.dtype} with {x_zp.size} values")
    if y_zp.dtype not in ACTIVATION_TYPES or y_zp.size != 1:
        raise ValueError(f"y_zero_point must be one uint8 or int8 value, got {y_zp.dtype} with {y_zp.size} values")
    if w.dtype != np.int8 or np.any(np.asarray(w_zero_point) != 0):
        raise ValueError("w must be int8 with an all-zero w_zero_point (symmetric weights)")
    if group != 1:
        raise ValueError("group > 1 is not supported by PredictiveQLinearConv v1")
    if w.shape[1] * w.shape[2] * w.shape[3] > MAX_REDUCTION:
        raise ValueError(f"w {list(w.shape)} sums more than {MAX_REDUCTION} products per output")
    channels = w.shape[0]
    if b is not None and (b.dtype != np.int32 or b.shape != (channels,)):
        raise ValueError(f"B must be int32 [{channels}], got {b.dtype} {b.shape}")
    y_dtype = y_zp.dtype.type
    scales = output_scales(x_scale, w_scale, y_scale, channels)
    acc = accumulate(x, x_zp[0], w, b, ConvAttributes(tuple(strides), tuple(pads), tuple(dilations), group))
    a = requantize(acc, scales, int(y_zp[0]), y_dtype)
    thresholds = zero_thresholds(x_scale, w_scale, scales, int(y_zp[0]), y_dtype, margin)
    sample, triggered = window_rule(acc <= thresholds.reshape(1, -1, 1, 1), sampling_pattern(pattern, window))
    y = np.where(sample | ~triggered, a, y_zp[0]).astype(y_dtype)
    counters = prediction_counters(a == y_zp[0], sample, triggered, w.shape[1] * w.shape[2] * w.shape[3], audit)
    return y, counters
