"""Check a rewritten model against its original before trusting it.

1. ``onnx.checker.check_model(full_check=True)`` on the rewritten model.
2. Every window forced to 1 (no prediction): the rewritten model must compute the original's
   outputs, within

       |rewritten − original| ≤ atol · max(1, max|original|) + rtol · |original|,   rtol = atol = 1e-4

   per output over all inputs. Not bit-exact: PredictiveConv sums in another order than onnxruntime's
   Conv, and folding BatchNormalization rounds the weights. A quantized model whose rewritten layers are
   all PredictiveQLinearConv must reproduce the int8 original bit for bit: integer accumulation and
   onnxruntime's own requantization leave nothing to round differently (on x86 CPUs with VNNI; without it
   onnxruntime's AVX2 u8s8 kernels can saturate at int16, docs/predictive_conv.md). A larger deviation
   raises :class:`~onnxpred.errors.ValidationError` naming the output and its maximum deviation.
3. The requested windows: per output the maximum and mean absolute deviation, and for
   ``[N, classes]`` outputs the share of rows whose arg-max (top-1 class) agrees.

The models run in onnxruntime (:func:`onnxpred.session`) at the same optimisation level, one after
the other, on the same inputs: seeded random values of the model's input shapes (a symbolic batch
dimension taken as 1), or images through the datasets API. Top-1 accuracy against the labels of
labelled images is reported for the original and the rewritten model.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import onnx

from . import op
from .errors import UnsupportedModelError, UserError, ValidationError
from .rewriter.api import set_windows
from .model_io import LARGE_MODEL_BYTES, load_model, payload_bytes, write_model
from .runtime import ModelLike, quiet_options, session

# Batch size for images when the model's batch dimension is symbolic.
DEFAULT_IMAGE_BATCH = 8


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-4
    atol: float = 1e-4

    def excess(self, reference: np.ndarray, candidate: np.ndarray) -> float:
        """How far the worst element lies beyond its allowance (≤ 0: within tolerance; NaN counts as beyond)."""
        allowed = self.atol * max(1.0, float(np.max(np.abs(reference), initial=0.0))) + self.rtol * np.abs(reference)
        excess = np.abs(candidate.astype(np.float64) - reference) - allowed
        return float(np.max(np.nan_to_num(excess, nan=np.inf), initial=-np.inf))

    def __str__(self) -> str:
        if self == EXACT:
            return "bit for bit"
        return f"|d| <= {self.atol:g} * max(1, max|original|) + {self.rtol:g} * |original|"


EXACT = Tolerance(0.0, 0.0)


def window_one_tolerance(rewritten: onnx.ModelProto) -> Tolerance:
    """How closely ``rewritten`` at window 1 must reproduce its original: exactly when every rewritten
    layer is a PredictiveQLinearConv, else the float tolerance."""
    layers = {node.op_type for node in rewritten.graph.node if op.is_contract_op(node)}
    return EXACT if layers == {op.QLINEAR_OP_TYPE} else Tolerance()


@dataclass(frozen=True)
class OutputDeviation:
    """Rewritten vs original for one output, over all inputs."""

    name: str
    max_abs: float
    mean_abs: float
    top1_agreement: Optional[float] = None  # for [N, classes] outputs: rows whose arg-max agrees

    @classmethod
    def between(cls, name: str, reference: np.ndarray, candidate: np.ndarray) -> "OutputDeviation":
        deviation = np.abs(candidate.astype(np.float64) - reference)
        agreement = None
        if reference.ndim == 2 and reference.shape[1] > 1:
            agreement = float(np.mean(reference.argmax(1) == candidate.argmax(1)))
        return cls(name, float(np.nan_to_num(deviation, nan=np.inf).max(initial=0.0)),
                   float(deviation.mean()) if deviation.size else 0.0, agreement)

    def __str__(self) -> str:
        text = f"{self.name}: max |d| {self.max_abs:.3g}, mean |d| {self.mean_abs:.3g}"
        if self.top1_agreement is not None:
            text += f", top-1 agreement {self.top1_agreement:.1%}"
        return text


@dataclass
class ValidationReport:
    inputs: str                      # what was fed to both models
    samples: int                     # rows (images) compared
    tolerance: Tolerance
    window_one: list[OutputDeviation]  # all windows 1: every one within tolerance
    predicted: list[OutputDeviation]   # the requested windows
    # Top-1 accuracy (original, rewritten) on labelled images; None without labels.
    accuracy: Optional[tuple[float, float]] = None

    def format(self) -> str:
        lines = [
            f"validation on {self.inputs}: onnx.checker passed",
            f"  windows forced to 1, {'equal ' if self.tolerance == EXACT else 'within '}{self.tolerance}:",
            *(f"    {d}" for d in self.window_one),
            "  requested windows:",
            *(f"    {d}" for d in self.predicted),
        ]
        if self.accuracy is not None:
            lines.append(f"  top-1 accuracy on the labelled images: original {self.accuracy[0]:.1%}, "
                         f"rewritten {self.accuracy[1]:.1%}")
        return "\n".join(lines)


def validate(
    original: ModelLike,
    rewritten: ModelLike,
    *,
    data: Union[str, os.PathLike, None] = None,
    max_images: Optional[int] = None,
    seed: int = 0,
    tolerance: Optional[Tolerance] = None,
    optimization_level: Optional[object] = None,
    threads: int = 0,
) -> ValidationReport:
    """Validate ``rewritten`` against ``original`` (paths, bytes or ModelProtos); see the module docstring.

    ``data``: a folder of images (see :func:`onnxpred.datasets.load_dataset`); None for the built-in
    labelled ImageNet samples when the model records its image preprocessing (an ``onnxpred export``),
    else random inputs (``seed``). ``optimization_level``: onnxruntime's, for both models (default: all).
    ``tolerance``: of the window-1 comparison (default :func:`window_one_tolerance`).
    """
    header = _header(original)
    output_names = [o.name for o in header.graph.output]
    initializers = {t.name for t in header.graph.initializer}
    graph_inputs = [i for i in header.graph.input if i.name not in initializers]
    if data is None and _labelled_images_fit(header, graph_inputs):
        feeds = _image_feeds(graph_inputs, header, None, max_images)  # the built-in ImageNet samples
    elif data is None:
        feeds = _random_feeds(graph_inputs, seed)
    else:
        feeds = _image_feeds(graph_inputs, header, data, max_images)
    options = quiet_options(threads, optimization_level)

    runtime_errors = onnxruntime_errors()

    def outputs_of(source, which: str, error_type: type[UserError]) -> list[np.ndarray]:
        # One session at a time, so that three copies of a large model never share the memory.
        try:
            runner = session(source, **options)
            batches = [[out[:rows] for out in runner.run(output_names, batch)] for batch, rows in feeds.batches()]
        except runtime_errors as error:
            raise error_type(f"onnxruntime cannot run the {which} model: {first_line(error)}") from error
        return [np.concatenate(per_output) for per_output in zip(*batches)]

    with _runnable(rewritten) as rewritten_source:
        try:
            onnx.checker.check_model(rewritten_source, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
            raise ValidationError(f"onnx.checker rejects the rewritten model: {first_line(error)}") from error
        rewritten_header = _header(rewritten)
        tolerance = tolerance or window_one_tolerance(rewritten_header)
        try:
            op.check_model(rewritten_header)  # the ranges onnx.checker does not know
        except op.ContractError as error:
            raise ValidationError(f"the rewritten model breaks the op's contract: {error}") from error
        requested = outputs_of(rewritten_source, "rewritten", ValidationError)
        with _runnable(set_windows(rewritten_source, 1)) as window_one_source:
            window_one = outputs_of(window_one_source, "rewritten", ValidationError)
    with _runnable(original) as original_source:
        reference = outputs_of(original_source, "original", UnsupportedModelError)

    for name, ref, out in zip(output_names, reference, window_one):
        if tolerance.excess(ref, out) > 0:
            raise ValidationError(
                f"with every window 1 the rewritten model's output {name!r} deviates from the original's by up to "
                f"{OutputDeviation.between(name, ref, out).max_abs:.3g} (tolerance: {tolerance})"
            )
    accuracy = None
    if feeds.labels is not None and (feeds.labels >= 0).any():  # top-1 of the first output, the logits
        labelled = feeds.labels >= 0
        accuracy = tuple(float(np.mean(out[labelled].argmax(1) == feeds.labels[labelled]))
                         for out in (reference[0], requested[0]))
    return ValidationReport(
        feeds.description,
        feeds.samples,
        tolerance,
        [OutputDeviation.between(*triple) for triple in zip(output_names, reference, window_one)],
        [OutputDeviation.between(*triple) for triple in zip(output_names, reference, requested)],
        accuracy,
    )


@dataclass
class _Feeds:
    """What every model is fed: ``batches()`` yields ``(feeds, real rows)`` afresh on each call."""

    description: str
    samples: int
    batches: Callable[[], Iterable[tuple[dict, int]]]
    labels: Optional[np.ndarray] = None  # per sample, -1 for an unlabelled image


def _random_feeds(inputs: Sequence[onnx.ValueInfoProto], seed: int) -> _Feeds:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in inputs:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if not np.issubdtype(dtype, np.floating):
            raise UnsupportedModelError(f"input {value.name!r} is {dtype}: random inputs are float only; give images")
        feeds[value.name] = rng.standard_normal(_static_shape(value)).astype(dtype)
    rows = next(iter(feeds.values())).shape[0] if feeds else 1
    shapes = ", ".join(f"{name} {'x'.join(map(str, v.shape))}" for name, v in feeds.items())
    return _Feeds(f"random inputs (seed {seed}; {shapes})", rows, lambda: [(feeds, rows)])


def _image_feeds(
    inputs: Sequence[onnx.ValueInfoProto], header: onnx.ModelProto, folder, max_images: Optional[int]
) -> _Feeds:
    from .datasets import PreprocessingSpec, batches, load_dataset

    if len(inputs) != 1:
        raise UnsupportedModelError(f"images need a model with one input, this one has {len(inputs)}")
    name = inputs[0].name
    dims = inputs[0].type.tensor_type.shape.dim
    static_batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    images = load_dataset(folder)[:max_images]
    spec = PreprocessingSpec.from_model(header)

    def feeds():
        for pixels, _ in batches(images, spec, static_batch or DEFAULT_IMAGE_BATCH):
            rows = len(pixels)
            if static_batch and rows < static_batch:  # a fixed batch size: pad with the last image
                pixels = np.concatenate([pixels, np.repeat(pixels[-1:], static_batch - rows, axis=0)])
            yield {name: pixels}, rows

    labels = np.array([-1 if image.label is None else image.label for image in images], dtype=np.int64)
    where = folder if folder is not None else "the built-in ImageNet samples"
    return _Feeds(f"{len(images)} images from {where}", len(images), feeds, labels)


def _labelled_images_fit(header: onnx.ModelProto, inputs: Sequence[onnx.ValueInfoProto]) -> bool:
    """Whether the model is an image classifier that says how to preprocess, and the built-in
    images are installed: then validation runs on real images rather than noise."""
    from .datasets import PREPROCESSING_KEY, load_dataset
    from .errors import InputError

    if len(inputs) != 1 or not any(p.key == PREPROCESSING_KEY for p in header.metadata_props):
        return False
    try:
        return bool(load_dataset(None))
    except InputError:
        return False


def _static_shape(value: onnx.ValueInfoProto) -> list[int]:
    """The input's shape; a symbolic batch (first) dimension becomes 1."""
    if not value.type.tensor_type.HasField("shape"):
        raise UnsupportedModelError(f"input {value.name!r} has no declared shape: validate it on images")
    shape = []
    for index, dim in enumerate(value.type.tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        elif index == 0:
            shape.append(1)
        else:
            raise UnsupportedModelError(
                f"input {value.name!r} has a dynamic dimension {index} ({dim.dim_param or '?'}): validate it on images"
            )
    return shape


def _header(model: ModelLike) -> onnx.ModelProto:
    """The model without its external tensors: inputs, outputs and metadata are all we read here."""
    return model if isinstance(model, onnx.ModelProto) else load_model(model, external_data=False)


@contextlib.contextmanager
def _runnable(model: ModelLike) -> Iterator[Union[str, bytes]]:
    """What onnxruntime and onnx.checker can open: a path as it is, else bytes, or for a model over
    2 GB a temporary file with external data."""
    if isinstance(model, (str, os.PathLike)):
        yield os.fspath(model)
    elif isinstance(model, bytes):
        yield model
    elif payload_bytes(model) <= LARGE_MODEL_BYTES:
        yield model.SerializeToString()
    else:
        with tempfile.TemporaryDirectory(prefix="onnxpred-") as folder:
            path = Path(folder) / "model.onnx"
            write_model(model, path, external_data=True)
            yield str(path)


def onnxruntime_errors() -> tuple[type[Exception], ...]:
    """onnxruntime's exception types (they share no base class besides Exception)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(c for c in vars(state).values() if isinstance(c, type) and issubclass(c, Exception))


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
