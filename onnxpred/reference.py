"""NumPy reference of ``ai.onnxpred::PredictiveConv`` v1: the oracle every C++ path is tested against.

Maths (the full specification: ``docs/predictive_conv.md``). Let ``P = conv(X, W, B) + Z`` in float32
and ``A = act(P)`` with ``act`` = Relu or Clip(0, clip_max). Each output plane (n, m) of size oH × oW is
covered by windows ``[a·k, a·k+k) × [b·k, b·k+k)`` clipped to the plane. Output (r, c) is a *sample* of
its window when the pattern marks offset (r mod k, c mod k) (the diagonal: ``r mod k == c mod k``).
Samples are always computed. A window is *triggered* when it has a sample inside the plane and
``P ≤ −margin`` at every one of them (NaN never is); its other outputs are predicted zero:

    Y[n, m, r, c] = 0              if (r, c) is not a sample and its window is triggered
                  = A[n, m, r, c]  otherwise

With margin 0 a sample triggers exactly when it is zero after the activation.

Counters: ``outputs, zero_diag, predicted, pred_hit, pred_miss, macs_dense, macs_executed``. The
reference executes exactly the non-predicted outputs, so its ``macs_executed`` is the lower bound
``(outputs − predicted) · (C/group) · kH · kW``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .op import ATTRIBUTES, COUNTER_NAMES, defaults

_DEFAULTS = defaults()


def sampling_pattern(pattern: str, window: int) -> np.ndarray:
    """k × k boolean grid of the offsets (i, j) that ``pattern`` samples in every window."""
    k = window
    i, j = np.indices((k, k))
    diagonal, anti_diagonal = i == j, i + j == k - 1
    centre = np.isin(i, ((k - 1) // 2, k // 2)) & np.isin(j, ((k - 1) // 2, k // 2))
    corners = np.isin(i, (0, k - 1)) & np.isin(j, (0, k - 1))
    grids = {
        "diagonal": diagonal,
        "anti_diagonal": anti_diagonal,
        "both_diagonals": diagonal | anti_diagonal,
        "checkerboard": (i + j) % 2 == 0,
        "corners": corners,
        "centre": centre,
    }
    if pattern not in grids:
        raise ValueError(f"unknown pattern {pattern!r} (known: {', '.join(grids)})")
    return grids[pattern]


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


def window_rule(zero: np.ndarray, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The window rule on ``zero`` [N, M, oH, oW], which marks the outputs that count as zero where
    they are samples: returns boolean masks ``(sample, triggered)`` of its shape, ``sample`` marking the
    sampled outputs, ``triggered`` the outputs whose window has a sample and only zero samples."""
    k = pattern.shape[0]
    n, m, height, width = zero.shape
    rows = np.arange(height) % k
    cols = np.arange(width) % k
    sample = np.broadcast_to(pattern[rows[:, None], cols[None, :]], zero.shape)
    # Pad to whole windows (the padding holds no sample) and reduce per window.
    win_h, win_w = -(-height // k), -(-width // k)

    def per_window(values: np.ndarray) -> np.ndarray:
        padded = np.zeros((n, m, win_h * k, win_w * k), dtype=bool)
        padded[:, :, :height, :width] = values
        return padded.reshape(n, m, win_h, k, win_w, k).any(axis=(3, 5))

    window_triggered = per_window(sample) & ~per_window(sample & ~zero)
    triggered = np.repeat(np.repeat(window_triggered, k, axis=2), k, axis=3)[:, :, :height, :width]
    return sample, triggered


def predict(
    p: np.ndarray, a: np.ndarray, pattern: np.ndarray, margin: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the prediction rule to pre-activations ``p`` and activations ``a`` [N, M, oH, oW].

    Returns ``(y, sample, triggered)``, besides ``y`` boolean masks of ``a``'s shape: ``sample`` marks
    the sampled outputs, ``triggered`` the outputs whose window is triggered (none of its samples is
    above -margin, or NaN).
    """
    sample, triggered = window_rule(p.astype(np.float32) <= -np.float32(margin), pattern)
    y = np.where(sample | ~triggered, a, np.float32(0)).astype(np.float32)
    return y, sample, triggered


def prediction_counters(y_true_zero: np.ndarray, sample: np.ndarray, triggered: np.ndarray, macs_per_output: int,
                        audit: bool) -> np.ndarray:
    """The op's counters (COUNTER_NAMES) from the window rule's masks; ``y_true_zero`` marks the outputs
    whose true (unpredicted) value is the activation's zero. The reference executes exactly the
    non-predicted outputs: its ``macs_executed`` is the lower bound."""
    predicted = ~sample & triggered
    outputs = sample.size
    n_predicted = int(predicted.sum())
    counters = {
        "outputs": outputs,
        "zero_diag": int((sample & triggered).sum()),
        "predicted": n_predicted,
        "pred_hit": int((predicted & y_true_zero).sum()) if audit else -1,
        "pred_miss": int((predicted & ~y_true_zero).sum()) if audit else -1,
        "macs_dense": outputs * macs_per_output,
        "macs_executed": (outputs - n_predicted) * macs_per_output,
    }
    return np.array([counters[name] for name in COUNTER_NAMES], dtype=np.int64)


def predictive_conv(
    x: np.ndarray,
    w: np.ndarray,
    b: Optional[np.ndarray] = None,
    z: Optional[np.ndarray] = None,
    *,
    strides: Sequence[int] = _DEFAULTS["strides"],
    pads: Sequence[int] = _DEFAULTS["pads"],
    dilations: Sequence[int] = _DEFAULTS["dilations"],
    group: int = _DEFAULTS["group"],
    window: int = _DEFAULTS["window"],
    pattern: str = _DEFAULTS["pattern"],
    margin: float = _DEFAULTS["margin"],
    activation: str = _DEFAULTS["activation"],
    clip_max: float = _DEFAULTS["clip_max"],
    audit: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """PredictiveConv on NumPy arrays: returns ``(Y float32, counters int64[7])``. The attributes'
    defaults and ranges are the contract's (:mod:`onnxpred.op`)."""
    for name, value in (("window", window), ("pattern", pattern), ("margin", margin)):
        ATTRIBUTES[name].check(value)
    attrs = ConvAttributes(tuple(strides), tuple(pads), tuple(dilations), group)
    v = conv2d(x, w, b, attrs)
    if z is not None:
        if z.shape != v.shape:
            raise ValueError(f"Z has shape {z.shape}, the output {v.shape}")
        v = v + z
    # The op computes in float32: round before the activation and the trigger test.
    p = v.astype(np.float32)
    a = activate(p, activation, clip_max)
    y, sample, triggered = predict(p, a, sampling_pattern(pattern, window), margin)
    return y, prediction_counters(a == 0, sample, triggered, w.shape[1] * w.shape[2] * w.shape[3], audit)
