"""One pass over a data set through the original model and its rewrites at several window sizes.

Each batch is decoded once and fed to every session in turn (one session per window, kept for the
whole run), so the cost is the images' decoding plus one inference per model. The rewritten models
run with ``audit = 1`` and expose each PredictiveConv's counters, which are summed over batches.

:class:`Evaluator` holds the sessions and counts a sequence of images into :class:`Tallies`, which merge:
:func:`evaluate` runs it once in-process, :mod:`.distributed` once per shard of images on Ray workers.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tqdm import tqdm

from .. import op
from ..datasets import LabelledImage, PreprocessingSpec, SkippedImage, batches
from ..errors import UnsupportedModelError
from ..rewriter.shapes import infer_shapes
from ..runtime import quiet_options, session
from .spatial import ZeroWindowTally
from .stats import softmax_kl, top_k_hits

_COUNTERS_SUFFIX = ".counters"
_Y_ZERO_POINT = op.QLINEAR_INPUT_NAMES.index("y_zero_point")


@dataclass(frozen=True)
class EligibleLayer:
    """A PredictiveConv or PredictiveQLinearConv of the rewritten model and the tensors the evaluation reads
    for it."""

    name: str  # the node's name
    activation: str  # its output Y, the name the Relu/Clip (or QuantizeLinear) output has in the original model
    counters: Optional[str]  # the graph output exposing its counters
    zero: int = 0  # the value of a zero activation: y_zero_point for a quantized layer


def eligible_layers(rewritten: onnx.ModelProto) -> list[EligibleLayer]:
    """The PredictiveConv and PredictiveQLinearConv nodes of a rewritten model, in graph order."""
    graph_outputs = {value.name for value in rewritten.graph.output}
    y_zero_points = {node.input[_Y_ZERO_POINT] for node in rewritten.graph.node if op.is_predictive_qlinear_conv(node)}
    constants = {t.name: int(numpy_helper.to_array(t)) for t in rewritten.graph.initializer if t.name in y_zero_points}
    layers = []
    for node in rewritten.graph.node:
        if op.is_contract_op(node):
            counters = node.output[1] if len(node.output) > 1 and node.output[1] in graph_outputs else None
            zero = constants[node.input[_Y_ZERO_POINT]] if op.is_predictive_qlinear_conv(node) else 0
            layers.append(EligibleLayer(node.name, node.output[0], counters, zero))
    return layers


def with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` with the tensors ``names`` added as graph outputs, of their inferred types."""
    produced = {name for node in model.graph.node for name in node.output}
    missing = [name for name in names if name not in produced]
    if missing:
        raise UnsupportedModelError(f"the model computes no tensor named {missing[0]!r}")
    extended = copy.deepcopy(model)
    present = {value.name for value in extended.graph.output}
    added = [name for name in names if name not in present]
    types = {value.name: value.type.tensor_type.elem_type for value in extended.graph.value_info}
    if any(not types.get(name) for name in added):
        infer_shapes(extended)
        types = {value.name: value.type.tensor_type.elem_type for value in extended.graph.value_info}
    extended.graph.output.extend(helper.make_tensor_value_info(name, types.get(name) or TensorProto.FLOAT, None)
                                 for name in added)
    return extended


@dataclass
class AccuracyTally:
    """Top-k hits against the labels, top-1 agreement with the original model and the KL divergence of the
    softmax from the original's, summed over batches."""

    images: int = 0
    labelled: int = 0
    top1: int = 0
    top5: int = 0
    agreement: int = 0
    kl_sum: float = 0.0  # Σ over images of KL(original's softmax || this model's)
    seconds: float = 0.0  # in session.run

    def add(self, logits: np.ndarray, labels: np.ndarray, reference_logits: np.ndarray) -> None:
        """Counts one batch, against the original model's ``reference_logits`` for it."""
        top1 = logits.argmax(axis=1)
        labelled = labels >= 0
        self.images += len(labels)
        self.labelled += int(labelled.sum())
        self.top1 += int((top1 == labels)[labelled].sum())
        self.top5 += int(top_k_hits(logits[labelled], labels[labelled], 5).sum())
        self.agreement += int((top1 == reference_logits.argmax(axis=1)).sum())
        self.kl_sum += float(softmax_kl(reference_logits, logits).sum())

    @property
    def changed(self) -> int:
        """Images whose top-1 class differs from the original's."""
        return self.images - self.agreement

    @property
    def mean_kl(self) -> float:
        return self.kl_sum / self.images if self.images else 0.0

    def merge(self, other: "AccuracyTally") -> None:
        """Adds the counts (and seconds) of ``other``, a tally of other images."""
        for name in (item.name for item in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


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
    skipped: list[SkippedImage] = field(default_factory=list)  # unreadable, left out of every number
    distribution: Optional[dict] = None  # how the work was spread (see .distributed); None: in-process


@dataclass
class Tallies:
    """What a pass over some images counts: every number of an :class:`Evaluation`, without the models.

    Tallies of disjoint sets of images merge into the tallies of their union (sums of integers).
    """

    original: AccuracyTally
    windows: list[AccuracyTally]  # one per rewritten model, in order
    counters: list[np.ndarray]  # one per rewritten model: [layer, COUNTER_NAMES] int64
    spatial: list[ZeroWindowTally]
    skipped: list[SkippedImage]

    @classmethod
    def empty(cls, window_count: int, layers: Sequence[EligibleLayer], spatial_windows: Sequence[int]) -> "Tallies":
        """Zero tallies for ``window_count`` rewritten models with ``layers``, and zero windows counted at
        ``spatial_windows`` (none when empty)."""
        return cls(
            AccuracyTally(), [AccuracyTally() for _ in range(window_count)],
            [np.zeros((len(layers), len(op.COUNTER_NAMES)), dtype=np.int64) for _ in range(window_count)],
            [ZeroWindowTally(layer.name, tuple(spatial_windows)) for layer in layers] if spatial_windows else [], [])

    def merge(self, other: "Tallies") -> None:
        self.original.merge(other.original)
        for tally, counters, other_tally, other_counters in zip(self.windows, self.counters, other.windows,
                                                                other.counters):
            tally.merge(other_tally)
            counters += other_counters
        for tally, other_tally in zip(self.spatial, other.spatial):
            tally.merge(other_tally)
        self.skipped += other.skipped

    def evaluation(self, windows: Sequence[tuple[object, onnx.ModelProto]], layers: Sequence[EligibleLayer],
                   seconds: float) -> Evaluation:
        """The Evaluation of these tallies, counted with the rewritten models ``windows``."""
        runs = []
        for (window, model), tally, counters in zip(windows, self.windows, self.counters):
            run = WindowRun(window, model, layers, tally)
            run.counters = counters
            runs.append(run)
        return Evaluation(self.original, runs, self.spatial, seconds, self.skipped)


def fixed_batch_size(model: onnx.ModelProto) -> Optional[int]:
    """The batch size of the model's input when it is fixed; None when it is dynamic."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    (model_input,) = [value for value in model.graph.input if value.name not in initializers]
    batch_dim = model_input.type.tensor_type.shape.dim[0]
    return batch_dim.dim_value if batch_dim.HasField("dim_value") else None


def batch_size_for(model: onnx.ModelProto, requested: int, image_count: int) -> int:
    """``requested``, or the model's own batch size when its input has a fixed one."""
    fixed = fixed_batch_size(model)
    if fixed is None:
        return requested
    if image_count % fixed:
        raise UnsupportedModelError(
            f"the model's batch size is fixed to {fixed}, which does not divide the {image_count} images; "
            "export it with a dynamic batch dimension"
        )
    return fixed


def evaluate(
    original: onnx.ModelProto,
    windows: Sequence[tuple[object, onnx.ModelProto]],
    layers: Sequence[EligibleLayer],
    images: Sequence[LabelledImage],
    spec: PreprocessingSpec,
    *,
    batch_size: int,
    spatial_windows: Sequence[int] = (),
    threads: Optional[int] = None,
    progress: bool = True,
    skip_bad_images: bool = False,
) -> Evaluation:
    """Run ``images`` through ``original`` and each ``(window, rewritten model)``.

    The rewritten models must expose their counters (``rewrite(..., expose_counters=True, audit=True)``);
    ``layers`` are their PredictiveConv nodes. With ``spatial_windows`` the original model also yields
    each layer's activation output, whose all-zero windows are counted. An unreadable image raises
    InputError, or with ``skip_bad_images`` is listed in ``Evaluation.skipped`` and left out of every number.
    :func:`.distributed.evaluate_on_ray` takes the same arguments and returns the same numbers.
    """
    batch_size = batch_size_for(original, batch_size, len(images))
    start = time.perf_counter()
    evaluator = Evaluator(original, windows, layers, spec, batch_size=batch_size, spatial_windows=spatial_windows,
                          threads=threads, skip_bad_images=skip_bad_images)
    with tqdm(total=len(images), unit="img", desc="evaluating", disable=not progress) as bar:
        tallies = evaluator.run(images, bar.update)
    return tallies.evaluation(windows, layers, time.perf_counter() - start)


class Evaluator:
    """The sessions of one evaluation (the original and each rewritten model, kept for the whole run) and the
    counting of images through them. Each batch is decoded once and fed to every session in turn."""

    def __init__(
        self,
        original: onnx.ModelProto,
        windows: Sequence[tuple[object, onnx.ModelProto]],
        layers: Sequence[EligibleLayer],
        spec: PreprocessingSpec,
        *,
        batch_size: int,
        spatial_windows: Sequence[int] = (),
        threads: Optional[int] = None,
        skip_bad_images: bool = False,
    ):
        if windows and any(layer.counters is None for layer in layers):
            raise ValueError("the rewritten models must expose the counters of every PredictiveConv")
        options = quiet_options(threads or 0)
        self.spec, self.batch_size, self.skip_bad_images = spec, batch_size, skip_bad_images
        self.fixed_batch = fixed_batch_size(original)
        self.layers, self.spatial_windows = list(layers), tuple(spatial_windows)
        activation_names = [layer.activation for layer in layers] if spatial_windows else []
        self.original_session = session(with_outputs(original, activation_names), **options)
        self.original_outputs = [original.graph.output[0].name, *activation_names]
        counter_names = [layer.counters for layer in layers]
        self.window_runs = [(session(model, **options), [model.graph.output[0].name, *counter_names])
                            for _, model in windows]

    def run(self, images: Sequence[LabelledImage], on_images: Optional[Callable[[int], object]] = None) -> Tallies:
        """The tallies of ``images`` (fresh ones each call); ``on_images(n)`` after every n images done."""
        tallies = Tallies.empty(len(self.window_runs), self.layers, self.spatial_windows)
        skipped = tallies.skipped if self.skip_bad_images else None
        done = 0
        for pixels, labels in batches(images, self.spec, self.batch_size, skipped=skipped):
            if self.fixed_batch is not None and len(labels) != self.fixed_batch:
                raise UnsupportedModelError(
                    f"the model's batch size is fixed to {self.fixed_batch}, and skipping unreadable images left "
                    f"a batch of {len(labels)}; export it with a dynamic batch dimension"
                )
            feeds = {self.original_session.get_inputs()[0].name: pixels}
            reference, *activations = _timed_run(self.original_session, self.original_outputs, feeds,
                                                 tallies.original)
            tallies.original.add(reference, labels, reference)  # its own agreement is trivially 1, its KL 0
            for tally, layer, values in zip(tallies.spatial, self.layers, activations):
                tally.add(values, layer.zero)
            for (run_session, output_names), tally, counters in zip(self.window_runs, tallies.windows,
                                                                     tallies.counters):
                logits, *layer_counters = _timed_run(run_session, output_names, feeds, tally)
                tally.add(logits, labels, reference)
                counters += np.stack(layer_counters)
            if on_images is not None:
                read = tallies.original.images + len(tallies.skipped)
                on_images(read - done)
                done = read
        if on_images is not None and done < len(images):  # the last batches' images were all skipped
            on_images(len(images) - done)
        return tallies


def _timed_run(sess, output_names: Sequence[str], feeds: dict, tally: AccuracyTally) -> list[np.ndarray]:
    start = time.perf_counter()
    outputs = sess.run(list(output_names), feeds)
    tally.seconds += time.perf_counter() - start
    return outputs
