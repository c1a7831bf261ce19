"""``onnxpred report``: accuracy, prediction outcomes and MAC savings per window size, written as
``report.json`` (every number), ``report.md`` and a self-contained ``report.html``."""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import onnx
import onnxruntime

from .. import __version__
from ..datasets import LabelledImage, PreprocessingSpec, load_dataset
from ..errors import OutputError, UnsupportedModelError, UserError
from ..model_io import load_model, write_text
from ..op import COUNTER_NAMES
from ..rewriter import RewriteSummary, rewrite_with_summary, set_windows
from ..rewriter.selection import predictor_grid
from .distributed import RayOptions, evaluator_for
from .evaluate import AccuracyTally, EligibleLayer, Evaluation, eligible_layers
from .render import to_html, to_markdown
from .scales import SCALE_IMAGES, preactivation_sd
from .spatial import DEFAULT_WINDOWS, summarize
from .stats import wilson_interval

PathLike = Union[str, os.PathLike]
ModelSource = Union[PathLike, onnx.ModelProto]

DEFAULT_BATCH_SIZE = 8
MODEL_NAME_KEY = "onnxpred.model_name"  # metadata written by onnxpred.models.export
SAMPLE_DEV_NOTE = (
    "imagenet-sample-dev holds one image per even ILSVRC-2012 class, probably taken from the training set, "
    "so absolute accuracies run high; only the differences between the original and the rewritten models "
    "are meaningful."
)
DEFAULT_PATTERNS = ("diagonal",)
DEFAULT_MARGINS = (0.0,)
MAC_SAVINGS_DENOMINATOR = "dense MACs of the rewritten Conv layers"
MAC_SAVINGS_ALL_CONV_DENOMINATOR = "dense MACs of all Conv layers of the model"


def check_windows(windows: Sequence[int]) -> list[int]:
    """Distinct window sizes in increasing order; each must be at least 1."""
    if not windows:
        raise UserError("give at least one window size")
    if any(int(window) != window or window < 1 for window in windows):
        raise UserError(f"window sizes must be integers >= 1, got {list(windows)}")
    return sorted({int(window) for window in windows})


def describe_data(data: Optional[PathLike]) -> tuple[str, Optional[str]]:
    """A label for the data set and the caveat the report must state for it, if any."""
    if data is None:
        return "the 20 labelled ImageNet sample images of the foolbox package (default)", None
    folder = Path(data)
    note = SAMPLE_DEV_NOTE if folder.resolve().name == "imagenet-sample-dev" else None
    return str(folder), note


def default_output_folder(model: ModelSource) -> Path:
    if isinstance(model, onnx.ModelProto):
        raise UserError("give an output folder when the model is not a file")
    path = Path(model)
    return path.with_name(f"{path.stem}.report")


def report(
    model: ModelSource,
    data: Optional[PathLike] = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    *,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    margins: Sequence[Union[float, str]] = DEFAULT_MARGINS,
    out_dir: Optional[PathLike] = None,
    limit: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    spatial: bool = True,
    threads: Optional[int] = None,
    progress: bool = True,
    skip_bad_images: bool = False,
    ray: Optional[RayOptions] = None,
) -> dict:
    """Evaluate ``model`` on ``data`` at each combination of window size, sampling pattern and margin
    and write the report files into ``out_dir`` (default ``<model stem>.report/`` beside the model).
    Returns the contents of ``report.json``. Margins are absolute or in units of each layer's
    pre-activation standard deviation (``"0.5sd"``), measured on the first :data:`SCALE_IMAGES` images.

    ``data`` is a dataset folder (see :func:`onnxpred.datasets.load_dataset`; None = foolbox's 20 images),
    of which the first ``limit`` images are used (all when None).
    ``spatial`` adds the spatial-correlation analysis (Figure 2) for the same window sizes.
    ``skip_bad_images`` lists unreadable images in ``skipped_images`` and leaves them out of every number
    (without it, the first one stops the run). ``ray`` spreads the work over a Ray cluster (same numbers).
    """
    windows = check_windows(windows)
    configurations = predictor_grid(windows, patterns, margins)
    out_dir = Path(out_dir) if out_dir is not None else default_output_folder(model)
    start = time.perf_counter()
    setup = _Setup.of(model, data, limit)
    scales = None
    if any(predictor.margin.in_sd for predictor in configurations):
        scales = preactivation_sd(setup.original, setup.rewritten, setup.images[:SCALE_IMAGES], setup.spec,
                                  batch_size=batch_size, threads=threads)
    evaluation = evaluator_for(ray)(
        setup.original,
        [(predictor, set_windows(setup.rewritten, predictor, scales=scales)) for predictor in configurations],
        setup.layers,
        setup.images, setup.spec, batch_size=batch_size, spatial_windows=windows if spatial else (),
        threads=threads, progress=progress, skip_bad_images=skip_bad_images,
    )
    data_label, data_note = describe_data(data)
    content = build_report(
        evaluation, setup.images, setup.spec,
        model=model.graph.name if isinstance(model, onnx.ModelProto) else str(model),
        model_name=next((p.value for p in setup.original.metadata_props if p.key == MODEL_NAME_KEY), None),
        data=data_label, data_note=data_note, summary=setup.summary, threads=threads,
        run_time_s=time.perf_counter() - start, scales=scales,
    )
    write_report(content, out_dir)
    return content


def analyze(
    model: ModelSource,
    data: Optional[PathLike] = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    *,
    limit: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: Optional[int] = None,
    progress: bool = True,
    skip_bad_images: bool = False,
    ray: Optional[RayOptions] = None,
) -> dict:
    """Spatial correlation of zero activations (Figure 2): the ``spatial_correlation`` section of a report,
    computed on the original model only, with the ``skipped_images`` list (see :func:`report`)."""
    windows = check_windows(windows)
    setup = _Setup.of(model, data, limit)
    evaluation = evaluator_for(ray)(setup.original, [], setup.layers, setup.images, setup.spec,
                                    batch_size=batch_size, spatial_windows=windows, threads=threads,
                                    progress=progress, skip_bad_images=skip_bad_images)
    return {**summarize(evaluation.spatial, windows), "skipped_images": _skipped_entries(evaluation)}


@dataclass(frozen=True)
class _Setup:
    """What every evaluation starts from."""

    original: onnx.ModelProto
    spec: PreprocessingSpec
    images: list[LabelledImage]
    rewritten: onnx.ModelProto  # at window 1, with audit = 1 and the counters exposed
    summary: RewriteSummary
    layers: list[EligibleLayer]

    @classmethod
    def of(cls, model: ModelSource, data: Optional[PathLike], limit: Optional[int]) -> "_Setup":
        """``model`` and the first ``limit`` images (all when None) of ``data``."""
        original = load_model(model)
        images = load_dataset(data)[:limit]
        rewritten, summary = rewrite_with_summary(original, window=1, audit=True, expose_counters=True)
        layers = eligible_layers(rewritten)
        if not layers:
            raise UnsupportedModelError("no layer of the model can be rewritten, so there is nothing to evaluate")
        return cls(original, PreprocessingSpec.from_model(original), images, rewritten, summary, layers)


def _skipped_entries(evaluation: Evaluation) -> list[dict]:
    return [{"file": str(image.path), "error": image.error} for image in evaluation.skipped]


def _fraction(part: int, whole: int) -> Optional[float]:
    return part / whole if whole else None


def _accuracy_entry(tally: AccuracyTally, keys: Sequence[str]) -> dict:
    entry = {}
    for key in keys:
        hits = getattr(tally, key)
        trials = tally.images if key == "agreement" else tally.labelled
        entry[key] = _fraction(hits, trials)
        entry[f"{key}_ci95"] = list(wilson_interval(hits, trials))
    entry["run_time_s"] = tally.seconds
    return entry


def _counter_entry(counters: np.ndarray) -> dict:
    """Counters by name, the Figure 5 outcome shares and the Figure 6 MAC savings of one layer's counters
    ``[7]`` or of several layers' ``[layers, 7]`` together."""
    rows = np.atleast_2d(counters)
    named = dict(zip(COUNTER_NAMES, (int(value) for value in rows.sum(axis=0))))
    outputs = named["outputs"]
    if named["pred_hit"] < 0:
        raise RuntimeError("pred_hit is negative: the counters come from a model rewritten without audit = 1")
    outcomes = {
        "pred_hit": _fraction(named["pred_hit"], outputs),
        "pred_miss": _fraction(named["pred_miss"], outputs),
        "zero_diag": _fraction(named["zero_diag"], outputs),
        "others": _fraction(outputs - named["predicted"] - named["zero_diag"], outputs),
    }
    savings = _fraction(named["macs_dense"] - named["macs_executed"], named["macs_dense"])
    return {"counters": named, "outcomes": outcomes, "mac_savings": savings,
            "mac_savings_ideal": _fraction(predicted_macs(rows), named["macs_dense"])}


def predicted_macs(counters: np.ndarray) -> int:
    """MACs of the predicted outputs in one layer's counters ``[7]`` or several layers' ``[layers, 7]``: what a
    kernel skipping exactly them saves. Layers differ in MACs per output, so they are summed layer by layer."""
    total = 0
    for row in np.atleast_2d(counters):
        named = dict(zip(COUNTER_NAMES, (int(value) for value in row)))
        total += named["predicted"] * named["macs_dense"] // named["outputs"] if named["outputs"] else 0
    return total


def build_report(
    evaluation: Evaluation,
    images: Sequence[LabelledImage],
    spec: PreprocessingSpec,
    *,
    model: str,
    model_name: Optional[str],
    data: str,
    data_note: Optional[str],
    summary: RewriteSummary,
    threads: Optional[int],
    run_time_s: float,
    scales: Optional[dict[str, float]] = None,
) -> dict:
    """The ``report.json`` document. Fractions are in 0..1; counters are summed over all images.
    Each evaluated run is labelled by its :class:`~onnxpred.rewriter.selection.Predictor`; ``scales``
    are the layers' pre-activation standard deviations that resolved margins given in sd."""
    # With a Conv of unknown size the all-Conv total is too small, and savings over it would be overstated.
    macs_all_conv = summary.conv_macs if not summary.unknown_macs else None
    skipped = {image.path for image in evaluation.skipped}
    images = [image for image in images if image.path not in skipped]  # the images every number counts
    results = []
    for run in evaluation.windows:
        total = _counter_entry(run.counters)
        executed_saved = total["counters"]["macs_dense"] - total["counters"]["macs_executed"]
        predicted = predicted_macs(run.counters)
        predictor = run.window
        results.append({
            "label": str(predictor),
            "window": predictor.window,
            "pattern": predictor.pattern,
            "margin": str(predictor.margin),
            **_accuracy_entry(run.tally, ("top1", "top5", "agreement")),
            "mac_savings": total["mac_savings"],
            "mac_savings_denominator": MAC_SAVINGS_DENOMINATOR,
            "mac_savings_all_conv": _fraction(executed_saved, macs_all_conv * run.tally.images)
            if macs_all_conv else None,
            "mac_savings_all_conv_denominator": MAC_SAVINGS_ALL_CONV_DENOMINATOR,
            "mac_savings_ideal": total["mac_savings_ideal"],
            "mac_savings_ideal_all_conv": _fraction(predicted, macs_all_conv * run.tally.images)
            if macs_all_conv else None,
            "outcomes": total["outcomes"],
            "counters": total["counters"],
            "layers": [{"name": layer.name, **_counter_entry(row)} for layer, row in zip(run.layers, run.counters)],
        })
    spec_fields = json.loads(spec.to_json())
    return {
        "model": model,
        "model_name": model_name,
        "data": data,
        "data_note": data_note,
        "images": len(images),
        "labelled_images": sum(image.label is not None for image in images),
        "image_list": [{"file": str(image.path), "label": image.label} for image in images],
        "skipped_images": _skipped_entries(evaluation),
        "preprocessing": {**spec_fields, "assumed": spec.assumed},
        "original": _accuracy_entry(evaluation.original, ("top1", "top5")),
        "macs_per_image": {"rewritten_layers": summary.rewritten_macs, "all_conv": macs_all_conv},
        "results": results,
        "spatial_correlation": summarize(evaluation.spatial, evaluation.spatial[0].windows)
        if evaluation.spatial else None,
        "not_rewritten": [{"name": layer.name, "op_type": layer.op_type, "reason": layer.reason}
                          for layer in summary.left_alone],
        "preactivation_sd": scales,
        "preactivation_sd_images": min(SCALE_IMAGES, len(images)) if scales else None,
        "run_time_s": run_time_s,
        "evaluation_time_s": evaluation.seconds,
        "threads": threads,
        "distribution": evaluation.distribution,
        "onnxpred_version": __version__,
        "onnxruntime_version": onnxruntime.__version__,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def write_report(content: dict, out_dir: PathLike) -> None:
    """``report.json``, ``report.md`` and ``report.html`` in ``out_dir`` (created if missing)."""
    folder = Path(out_dir)
    files = {
        "report.json": json.dumps(content, indent=2) + "\n",
        "report.md": to_markdown(content),
        "report.html": to_html(content),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write the report into {folder}: {error}") from None
    for name, text in files.items():
        write_text(folder / name, text)
