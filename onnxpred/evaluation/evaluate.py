"""One pass over a data set through the original model and its rewrites at several window sizes.

Each batch is decoded once and fed to every session in turn (one session per window, kept for the
whole run), so the cost is the images' decoding plus one inference per model. The rewritten models
run with ``audit = 1`` and expose each PredictiveConv's counters, which are summed over batches.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper
from tqdm import tqdm

from .. import op
from ..datasets import LabelledImage, PreprocessingSpec, batches
from ..errors import UnsupportedModelError
from ..runtime import quiet_options, session
from .spatial import ZeroWindowTally
from .stats import top_k_hits

_COUNTERS_SUFFIX = ".counters"


@dataclass(frozen=True)
class EligibleLayer:
    """A PredictiveConv of the rewritten model and the tensors the evaluation reads for it."""

    name: str  # the PredictiveConv node's name
    activation: str  # its output Y, the name the Relu/Clip output has in the original model
    counters: Optional[str]  # the graph output exposing its counters


def eligible_layers(rewritten: onnx.ModelProto) -> list[EligibleLayer]:
    """The PredictiveConv nodes of a rewritten model, in graph order."""
    graph_outputs = {value.name for value in rewritten.graph.output}
    layers = []
    for node in rewritten.graph.node:
        if node.domain == op.DOMAIN and node.op_type == op.OP_TYPE:
            counters = node.output[1] if len(node.output) > 1 and node.output[1] in graph_outputs else None
            layers.append(EligibleLayer(node.name, node.output[0], counters))
    return layers


def with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` with the float tensors ``names`` added as graph outputs."""
    produced = {name for node in model.graph.node for name in node.output}
    missing = [name for name in names if name not in produced]
    if missing:
        raise UnsupportedModelError(f"the model computes no tensor named {missing[0]!r}")
    extended = copy.deepcopy(model)
    present = {value.name for value in extended.graph.output}
    extended.graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names if name not in present
    )
    return extended


@dataclass
class AccuracyTally:
    """Top-k hits against the labels and top-1 agreement with the original model, summed over batches."""

    images: int = 0
    labelled: int = 0
    top1: int = 0
    top5: int = 0
    agreement: int = 0
    seconds: float = 0.0  # in session.run

    def add(self, logits: np.ndarray, labels: np.ndarray, reference_top1: np.ndarray) -> np.ndarray:
        """Counts one batch; returns its top-1 classes."""
        top1 = logits.argmax(axis=1)
        labelled = labels >= 0
        self.images += len(labels)
        self.labelled += int(labelled.sum())
        self.top1 += int((top1 == labels)[labelled].sum())
        self.top5 += int(top_k_hits(logits[labelled], labels[labelled], 5).sum())
        self.agreement += int((top1 == reference_top1).sum())
        return top1


@dataclass
class WindowRun:
    """The rewritten model at one window size: its session and what it has counted so far."""

    window: int
    model: onnx.ModelProto
    layers: Sequence[EligibleLayer]
    tally: AccuracyTally = field(default_factory=AccuracyTally)
    counters: np.ndarray = field(init=False)  # [layer, COUNTER_NAMES] int64

    def __post_init__(self):
        self.counters = np.zeros((len(self.layers), len(op.COUNTER_NAMES)), dtype=np.int64)


@dataclass
class Evaluation:
    original: AccuracyTally
    windows: list[WindowRun]
    spatial: list[ZeroWindowTally]
    seconds: float  # wall time of the whole pass, decoding included


def batch_size_for(model: onnx.ModelProto, requested: int, image_count: int) -> int:
    """``requested``, or the model's own batch size when its input has a fixed one."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    (model_input,) = [value for value in model.graph.input if value.name not in initializers]
    batch_dim = model_input.type.tensor_type.shape.dim[0]
    if not batch_dim.HasField("dim_value"):
        return requested
    fixed = batch_dim.dim_value
    if image_count % fixed:
        raise UnsupportedModelError(
            f"the model's batch size is fixed to {fixed}, which does not divide the {image_count} images; "
            "export it with a dynamic batch dimension"
        )
    return fixed


def evaluate(
    original: onnx.ModelProto,
    windows: Sequence[tuple[int, onnx.ModelProto]],
    layers: Sequence[EligibleLayer],
    images: Sequence[LabelledImage],
    spec: PreprocessingSpec,
    *,
    batch_size: int,
    spatial_windows: Sequence[int] = (),
    threads: Optional[int] = None,
    progress: bool = True,
) -> Evaluation:
    """Run ``images`` through ``original`` and each ``(window, rewritten model)``.

    The rewritten models must expose their counters (``rewrite(..., expose_counters=True, audit=True)``);
    ``layers`` are their PredictiveConv nodes. With ``spatial_windows`` the original model also yields
    each layer's activation output, whose all-zero windows are counted.
    """
    if windows and any(layer.counters is None for layer in layers):
        raise ValueError("the rewritten models must expose the counters of every PredictiveConv")
    options = quiet_options(threads or 0)
    batch_size = batch_size_for(original, batch_size, len(images))
    spatial = [ZeroWindowTally(layer.name, spatial_windows) for layer in layers] if spatial_windows else []
    activation_names = [layer.activation for layer in layers] if spatial else []
    original_session = session(with_outputs(original, activation_names), **options)
    original_outputs = [original.graph.output[0].name, *activation_names]
    runs = [WindowRun(window, model, layers) for window, model in windows]
    sessions = [session(run.model, **options) for run in runs]
    counter_names = [layer.counters for layer in layers]
    original_tally = AccuracyTally()
    start = time.perf_counter()
    with tqdm(total=len(images), unit="img", desc="evaluating", disable=not progress) as bar:
        for pixels, labels in batches(images, spec, batch_size):
            feeds = {original_session.get_inputs()[0].name: pixels}
            logits, *activations = _timed_run(original_session, original_outputs, feeds, original_tally)
            # The original's own agreement is trivially 1; its top-1 is the reference of the rewritten models.
            reference_top1 = original_tally.add(logits, labels, logits.argmax(axis=1))
            for tally, values in zip(spatial, activations):
                tally.add(values)
            for run, run_session in zip(runs, sessions):
                logits, *counters = _timed_run(run_session, [run.model.graph.output[0].name, *counter_names],
                                               feeds, run.tally)
                run.tally.add(logits, labels, reference_top1)
                run.counters += np.stack(counters)
            bar.update(len(labels))
    return Evaluation(original_tally, runs, spatial, time.perf_counter() - start)


def _timed_run(sess, output_names: Sequence[str], feeds: dict, tally: AccuracyTally) -> list[np.ndarray]:
    start = time.perf_counter()
    outputs = sess.run(list(output_names), feeds)
    tally.seconds += time.perf_counter() - start
    return outputs
