"""Each rewritten layer's pre-activation statistics: its scale, the unit of margins given as ``0.5sd``,
and its channels' activity, by which ``--order-channels`` orders them.

A PredictiveConv triggers a window when its samples' pre-activation ``P = conv(X, W, B) + Z`` is at
most ``−margin`` (``docs/predictive_conv.md``). How negative is "confidently negative" depends on the
layer, so a margin is most useful as a multiple of the layer's own spread: the standard deviation of
``P`` over every output of the layer (all channels, positions and images). ``P`` is the tensor the
original model feeds its Relu/Clip, observed in onnxruntime on the images given.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import onnx

from .. import op
from ..datasets import LabelledImage, PreprocessingSpec, batches, load_dataset
from ..errors import UnsupportedModelError
from ..model_io import load_model
from ..rewriter import rewrite
from ..runtime import ModelLike, quiet_options, session
from .evaluate import batch_size_for, with_outputs

# Images the standard deviations are measured on, by default: the spread of a layer's
# pre-activation settles within a few dozen images.
SCALE_IMAGES = 64


def preactivation_tensors(original: onnx.ModelProto, rewritten: onnx.ModelProto, *,
                          skip_unobservable: bool = False) -> dict[str, str]:
    """``{layer: the original's tensor holding its pre-activation}`` for every PredictiveConv and
    PredictiveQLinearConv of ``rewritten``: the input of the activation whose output the node now writes;
    for a quantized layer, of the QuantizeLinear (and the Relu or Clip before it, if any): the float Conv
    output of the QDQ graph, in the real units of a quantized layer's margin. A layer whose activation the
    original fuses into another node is an error, or with ``skip_unobservable`` left out."""
    producers = {output: node for node in original.graph.node for output in node.output}
    tensors = {}
    for node in rewritten.graph.node:
        if not op.is_contract_op(node):
            continue
        activation = producers.get(node.output[0])
        if op.is_predictive_qlinear_conv(node) and activation is not None and activation.op_type == "QuantizeLinear":
            before = producers.get(activation.input[0])
            if before is None or before.op_type not in op.ACTIVATIONS:  # the quantizer dropped the activation
                tensors[node.name] = activation.input[0]
                continue
            activation = before
        if activation is None or activation.op_type not in op.ACTIVATIONS:
            if skip_unobservable:
                continue
            kind = activation.op_type if activation is not None else "nothing"
            raise UnsupportedModelError(
                f"layer {node.name!r}: its activation is fused into {kind} in the original, so its pre-activation "
                "cannot be observed; give its margin in absolute units")
        tensors[node.name] = activation.input[0]
    return tensors


def _per_layer(original: onnx.ModelProto, tensors: Mapping[str, str], images: Sequence[LabelledImage],
               spec: PreprocessingSpec, batch_size: int, threads: Optional[int],
               observe: Callable[[int, np.ndarray], None], result: Callable[[int], Any]) -> dict:
    """``{layer: result(index)}`` for ``tensors`` = ``{layer: tensor of original}``, once ``observe(index,
    values)`` has seen each distinct tensor (by index) on each batch of ``images``."""
    if not images:
        raise UnsupportedModelError("measuring the layers' statistics needs at least one image")
    names = list(dict.fromkeys(tensors.values()))
    sess = session(with_outputs(original, names), **quiet_options(threads or 0))
    feed_name = sess.get_inputs()[0].name
    for pixels, _ in batches(images, spec, batch_size_for(original, batch_size, len(images))):
        for index, values in enumerate(sess.run(names, {feed_name: pixels})):
            observe(index, values)
    by_tensor = {name: result(index) for index, name in enumerate(names)}
    return {layer: by_tensor[tensor] for layer, tensor in tensors.items()}


def preactivation_sd(
    original: onnx.ModelProto,
    rewritten: onnx.ModelProto,
    images: Sequence[LabelledImage],
    spec: PreprocessingSpec,
    *,
    batch_size: int = 8,
    threads: Optional[int] = None,
) -> dict[str, float]:
    """``{layer: standard deviation of its pre-activation}`` over ``images`` through ``original``."""
    sums: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(3))  # count, total, sum of squares

    def observe(index: int, values: np.ndarray) -> None:
        values = values.astype(np.float64)
        sums[index] += (values.size, values.sum(), np.square(values).sum())

    def sd(index: int) -> float:
        count, total, squares = sums[index]
        mean = total / count
        return float(np.sqrt(max(squares / count - mean**2, 0.0)))

    return _per_layer(original, preactivation_tensors(original, rewritten), images, spec, batch_size, threads,
                      observe, sd)


def preactivation_activity(
    original: onnx.ModelProto,
    rewritten: onnx.ModelProto,
    images: Sequence[LabelledImage],
    spec: PreprocessingSpec,
    *,
    batch_size: int = 8,
    threads: Optional[int] = None,
) -> dict[str, np.ndarray]:
    """``{layer: each output channel's share of positive pre-activations}`` (the outputs its activation
    leaves non-zero) over ``images`` through ``original``: what
    :class:`~onnxpred.rewriter.passes.order_channels.OrderChannels` orders channels by."""
    positive: dict[int, np.ndarray] = {}
    count: dict[int, float] = defaultdict(float)  # outputs per channel

    def observe(index: int, values: np.ndarray) -> None:
        share = (values > 0).sum(axis=tuple(a for a in range(values.ndim) if a != 1))
        positive[index] = positive[index] + share if index in positive else share
        count[index] += values.size / values.shape[1]

    tensors = preactivation_tensors(original, rewritten, skip_unobservable=True)
    return _per_layer(original, tensors, images, spec, batch_size, threads, observe,
                      lambda index: positive[index] / count[index])


def layer_statistics(measure, model: ModelLike, data=None, *, limit: int = SCALE_IMAGES,
                     threads: Optional[int] = None) -> dict:
    """``measure`` (:func:`preactivation_sd`, :func:`preactivation_activity`) of every layer the rewriter
    can predict in ``model``, on the first ``limit`` images of ``data`` (a dataset folder; None: the
    built-in ImageNet samples)."""
    original = load_model(model)
    images = load_dataset(data)[:limit]
    return measure(original, rewrite(original, window=1), images, PreprocessingSpec.from_model(original),
                   threads=threads)
