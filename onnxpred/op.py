"""The ``ai.onnxpred::PredictiveConv`` v1 interface: names, attributes and a node builder.

Semantics: ``shared/DESIGN.md`` §1; the executable definition is :mod:`onnxpred.reference`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import onnx
from onnx import helper

DOMAIN = "ai.onnxpred"
OP_TYPE = "PredictiveConv"
OPSET_VERSION = 1
COUNTER_NAMES = (
    "outputs",
    "zero_diag",
    "predicted",
    "pred_hit",
    "pred_miss",
    "macs_dense",
    "macs_executed",
)
ACTIVATIONS = ("Relu", "Clip")


def opset_import() -> onnx.OperatorSetIdProto:
    return helper.make_opsetid(DOMAIN, OPSET_VERSION)


def make_node(
    inputs: Sequence[str],
    outputs: Sequence[str],
    *,
    name: str,
    kernel_shape: Sequence[int],
    strides: Sequence[int] = (1, 1),
    pads: Sequence[int] = (0, 0, 0, 0),
    dilations: Sequence[int] = (1, 1),
    group: int = 1,
    window: int = 3,
    activation: str = "Relu",
    clip_max: Optional[float] = None,
    audit: bool = False,
) -> onnx.NodeProto:
    """A PredictiveConv node. ``inputs``: X, W[, B[, Z]] ("" for an omitted B); ``outputs``: Y[, counters]."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    attrs = dict(
        kernel_shape=list(kernel_shape),
        strides=list(strides),
        pads=list(pads),
        dilations=list(dilations),
        group=int(group),
        window=int(window),
        activation=activation,
        audit=int(bool(audit)),
    )
    if clip_max is not None and math.isfinite(clip_max):
        attrs["clip_max"] = float(clip_max)
    return helper.make_node(OP_TYPE, list(inputs), list(outputs), name=name, domain=DOMAIN, **attrs)
