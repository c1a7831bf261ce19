"""NumPy reference of ``ai.onnxpred::PredictiveConv`` v1: the oracle every C++ path is tested against.

Maths. Let ``A = act(conv(X, W, B) + Z)`` with ``act`` = Relu or Clip(0, clip_max). Each output plane
(n, m) of size oH × oW is covered by windows ``[a·k, a·k+k) × [b·k, b·k+k)`` clipped to the plane.
Output (r, c) is a *sample* of its window when the window pattern marks offset (r mod k, c mod k);
for the diagonal pattern that is ``r mod k == c mod k``. Samples are always computed. A window whose
samples are all exactly zero predicts the rest of its outputs to be zero (NaN counts as non-zero):

    Y[n, m, r, c] = 0          if (r, c) is not a sample and every sample of its window has A == 0
                  = A[n, m, r, c]  otherwise

Counters: ``outputs, zero_diag, predicted, pred_hit, pred_miss, macs_dense, macs_executed`` (see
``shared/DESIGN.md`` §1). The reference executes exactly the non-predicted outputs, so its
``macs_executed`` is the lower bound ``(outputs − predicted) · (C/group) · kH · kW``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .op import COUNTER_NAMES


def diagonal_pattern(window: int) -> np.ndarray:
    """k × k boolean grid of the sampled offsets: the main diagonal."""
    return np.eye(window, dtype=bool)


@dataclass(frozen=True)
class ConvAttributes:
    """Conv attributes in ONNX form, pads as ``[top, left, bottom, right]``."""

    strides: Sequence[int] = (1, 1)
    pads: Sequence[int] = (0, 0, 0, 0)
    dilations: Sequence[int] = (1, 1)
    group: int = 1


def conv2d(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], attrs: ConvAttributes) -> np.ndarray:
    """ONNX Conv (NCHW, explicit pads) in float64."""
    n, c, _, _ = x.shape
    m, cg, kh_count, kw_count = w.shape
    group = attrs.group
    sh, sw = attrs.strides
    dh, dw = attrs.dilations
    top, left, bottom, right = attrs.pads
    if cg * group != c or m % group:
        raise ValueError(f"X has {c} channels, W {w.shape} with group {group}")
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    out_h = (xp.shape[2] - dh * (kh_count - 1) - 1) // sh + 1
    out_w = (xp.shape[3] - dw * (kw_count - 1) - 1) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError("padded input is smaller than the dilated kernel")
    xg = xp.reshape(n, group, cg, xp.shape[2], xp.shape[3])
    wg = w.astype(np.float64).reshape(group, m // group, cg, kh_count, kw_count)
    out = np.zeros((n, group, m // group, out_h, out_w))
    for kh in range(kh_count):
        for kw in range(kw_count):
            rows = slice(kh * dh, kh * dh + sh * (out_h - 1) + 1, sh)
            cols = slice(kw * dw, kw * dw + sw * (out_w - 1) + 1, sw)
            out += np.einsum("ngchw,gmc->ngmhw", xg[:, :, :, rows, cols], wg[:, :, :, kh, kw])
    out = out.reshape(n, m, out_h, out_w)
    if b is not None:
        out += b.astype(np.float64).reshape(1, m, 1, 1)
    return out


def activate(v: np.ndarray, activation: str = "Relu", clip_max: float = math.inf) -> np.ndarray:
    """Relu or Clip(0, clip_max); NaN propagates."""
    if activation == "Relu":
        return np.maximum(v, 0)
    if activation == "Clip":
        return np.minimum(np.maximum(v, 0), clip_max)
    raise ValueError(f"unknown activation {activation!r}")


def predict(a: np.ndarray, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the prediction rule to activations ``a`` [N, M, oH, oW].

    Returns ``(y, sample, active)`` boolean masks of ``a``'s shape besides ``y``: ``sample`` marks the
    sampled outputs, ``active`` the outputs whose window has a non-zero sample.
    """
    k = pattern.shape[0]
    n, m, height, width = a.shape
    rows = np.arange(height) % k
    cols = np.arange(width) % k
    sample = np.broadcast_to(pattern[rows[:, None], cols[None, :]], a.shape)
    # Pad to whole windows (the padding holds no sample) and reduce per window.
    win_h, win_w = -(-height // k), -(-width // k)
    nonzero_sample = np.zeros((n, m, win_h * k, win_w * k), dtype=bool)
    nonzero_sample[:, :, :height, :width] = sample & ~(a == 0)
    window_active = nonzero_sample.reshape(n, m, win_h, k, win_w, k).any(axis=(3, 5))
    active = np.repeat(np.repeat(window_active, k, axis=2), k, axis=3)[:, :, :height, :width]
    y = np.where(sample | active, a, np.float32(0)).astype(np.float32)
    return y, sample, active


def predictive_conv(
    x: np.ndarray,
    w: np.ndarray,
    b: Optional[np.ndarray] = None,
    z: Optional[np.ndarray] = None,
    *,
    strides: Sequence[int] = (1, 1),
    pads: Sequence[int] = (0, 0, 0, 0),
    dilations: Sequence[int] = (1, 1),
    group: int = 1,
    window: int = 3,
    activation: str = "Relu",
    clip_max: float = math.inf,
    audit: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """PredictiveConv on NumPy arrays: returns ``(Y float32, counters int64[7])``."""
    if window < 1:
        raise ValueError("window must be >= 1")
    attrs = ConvAttributes(tuple(strides), tuple(pads), tuple(dilations), group)
    v = conv2d(x, w, b, attrs)
    if z is not None:
        if z.shape != v.shape:
            raise ValueError(f"Z has shape {z.shape}, the output {v.shape}")
        v = v + z
    # The op computes in float32: round before the activation so zero tests see float32 values.
    a = activate(v.astype(np.float32), activation, clip_max)
    y, sample, active = predict(a, diagonal_pattern(window))
    predicted = ~sample & ~active
    outputs = a.size
    macs_per_output = w.shape[1] * w.shape[2] * w.shape[3]
    n_predicted = int(predicted.sum())
    counters = {
        "outputs": outputs,
        "zero_diag": int((sample & ~active).sum()),
        "predicted": n_predicted,
        "pred_hit": int((predicted & (a == 0)).sum()) if audit else -1,
        "pred_miss": int((predicted & ~(a == 0)).sum()) if audit else -1,
        "macs_dense": outputs * macs_per_output,
        "macs_executed": (outputs - n_predicted) * macs_per_output,
    }
    return y, np.array([counters[name] for name in COUNTER_NAMES], dtype=np.int64)
