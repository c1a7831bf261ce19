"""Combining the layers' candidates into one configuration within the accuracy budget.

Each layer's measured candidates (:mod:`.sensitivity`) have a gain (the objective: predicted MACs, MACs
the kernels skip, or µs saved) and a cost (the KL divergence they cause alone). For a price λ every layer
takes the candidate with the largest ``gain − λ · cost``, or stays onnxruntime's Conv when none is
positive; lowering λ from infinity to zero gives a path of configurations of growing gain (the Lagrangian
relaxation of the knapsack "most gain for a total cost"). KL divergences add up only roughly, so the
path is not trusted for accuracy: its configurations are run on the whole tuning part, three at a time
in one :func:`onnxpred.evaluation.evaluate.evaluate` pass, narrowing on the last one that keeps the drop
of the metric, plus half its standard error (:data:`NOISE_WEIGHT`), within the budget. Every configuration
run is kept for the report.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import onnx

from .. import op
from ..evaluation.evaluate import AccuracyTally, EligibleLayer, Evaluation
from ..evaluation.report import predicted_macs
from ..rewriter.api import set_windows
from .sensitivity import Measured

OBJECTIVES = ("macs", "executed", "latency")
# A configuration keeps the budget when its drop on the tuning images plus this many standard errors does:
# a few hundred images measure a drop to about a point, and the search picks the configurations whose
# measured drop happened to be low, so the edge of the budget is judged with a margin for that noise.
NOISE_WEIGHT = 0.5
METRICS = ("top1", "agreement")
_KL_FLOOR = 1e-9
_DENSE, _EXECUTED = (op.COUNTER_NAMES.index(name) for name in ("macs_dense", "macs_executed"))


def gain_of(objective: str) -> Callable[[Measured], float]:
    """The objective's gain of one measured candidate, per image."""
    if objective == "macs":
        return lambda m: m.predicted_macs
    if objective == "executed":
        return lambda m: m.skipped_macs
    if objective == "latency":
        return lambda m: m.saved_us if m.saved_us is not None else 0.0
    raise ValueError(f"unknown objective {objective!r}")


Configuration = dict  # {layer: Measured}


def lagrangian_path(options: Mapping[str, Sequence[Measured]],
                    gain: Callable[[Measured], float]) -> list[Configuration]:
    """Distinct configurations by increasing total gain, from the first layer alone to every layer at its
    largest gain; only candidates with a positive gain take part."""
    usable = {layer: [m for m in ms if gain(m) > 0] for layer, ms in options.items()}
    prices = set()
    for ms in usable.values():
        for a in ms:
            prices.add(gain(a) / max(a.kl, _KL_FLOOR))
            for b in ms:  # where the layer switches from candidate b to the larger-gain a
                if gain(a) > gain(b) and a.kl > b.kl:
                    prices.add((gain(a) - gain(b)) / (a.kl - b.kl))
    path, seen = [], set()
    for price in sorted(prices, reverse=True):
        chosen = {}
        for layer, ms in usable.items():
            best = max(ms, key=lambda m: gain(m) - price * (1 - 1e-9) * max(m.kl, _KL_FLOOR), default=None)
            if best is not None and gain(best) - price * (1 - 1e-9) * max(best.kl, _KL_FLOOR) > 0:
                chosen[layer] = best
        key = tuple(sorted((layer, str(m.predictor)) for layer, m in chosen.items()))
        if chosen and key not in seen:
            seen.add(key)
            path.append(chosen)
    return sorted(path, key=lambda config: sum(gain(m) for m in config.values()))


@dataclass
class Tried:
    """One configuration run on the tuning part."""

    label: str
    config: Configuration
    tally: AccuracyTally
    predicted_macs: float  # per image, over the model
    skipped_macs: float
    drop_points: float  # of the metric against the original, in points
    noise_points: float  # the drop's standard error (see :func:`drop_noise`)
    feasible: bool

    def to_json(self, conv_macs: Optional[int]) -> dict:
        return {"label": self.label, "layers": len(self.config),
                "settings": {layer: m.predictor.to_json() for layer, m in self.config.items()},
                "top1": self.tally.top1 / self.tally.labelled if self.tally.labelled else None,
                "agreement": self.tally.agreement / self.tally.images if self.tally.images else None,
                "images": self.tally.images, "labelled": self.tally.labelled,
                "top1_hits": self.tally.top1, "agreement_hits": self.tally.agreement,
                "predicted_macs": self.predicted_macs, "skipped_macs": self.skipped_macs,
                "predicted_share_all_conv": self.predicted_macs / conv_macs if conv_macs else None,
                "skipped_share_all_conv": self.skipped_macs / conv_macs if conv_macs else None,
                "drop_points": self.drop_points, "noise_points": self.noise_points,
                "judged_drop_points": self.drop_points + NOISE_WEIGHT * self.noise_points, "feasible": self.feasible}


def metric_points(tally: AccuracyTally, metric: str) -> float:
    """The metric in points (0..100); top-1 over the labelled images, agreement over all."""
    if metric == "top1":
        return 100.0 * tally.top1 / tally.labelled if tally.labelled else float("nan")
    return 100.0 * tally.agreement / tally.images if tally.images else float("nan")


def drop_noise(tally: AccuracyTally, metric: str) -> float:
    """Standard error of the drop of ``metric`` in points, from the images whose top-1 class changed: each
    changes the paired difference by at most one, so its variance is at most changed / n²."""
    trials = tally.labelled if metric == "top1" else tally.images
    return 100.0 * math.sqrt(tally.images - tally.agreement) / trials if trials else float("inf")


def counted_macs(counters: np.ndarray, images: int) -> tuple[float, float]:
    """(predicted, skipped) MACs per image from the counters [layers, 7] summed over ``images``."""
    predicted = float(predicted_macs(counters))
    skipped = float((counters[:, _DENSE] - counters[:, _EXECUTED]).sum())
    return predicted / max(images, 1), skipped / max(images, 1)


@dataclass
class Search:
    """Runs configurations of ``base`` (every eligible layer a PredictiveConv at window 1, counters exposed)
    on the tuning images through ``evaluator`` (:func:`onnxpred.evaluation.evaluate.evaluate`'s signature)."""

    original: onnx.ModelProto
    base: onnx.ModelProto
    layers: Sequence[EligibleLayer]
    run_images: Callable[[Sequence[tuple[str, onnx.ModelProto]]], Evaluation]
    metric: str
    max_drop: float
    tried: list = field(default_factory=list)
    original_tally: Optional[AccuracyTally] = None
    cut_short: bool = False  # the deadline stopped the narrowing

    def model_for(self, config: Configuration) -> onnx.ModelProto:
        """``base`` with the configuration's predictors (the other layers stay at window 1, exactly Conv)."""
        return set_windows(self.base, {layer: m.predictor for layer, m in config.items()})

    def run(self, labelled: Sequence[tuple[str, Configuration]]) -> list[Tried]:
        models = [(label, self.model_for(config)) for label, config in labelled]
        evaluation = self.run_images(models)
        self.original_tally = evaluation.original
        reference = metric_points(evaluation.original, self.metric)
        results = []
        for (label, config), window_run in zip(labelled, evaluation.windows):
            predicted, skipped = counted_macs(window_run.counters, window_run.tally.images)
            drop = reference - metric_points(window_run.tally, self.metric)
            noise = drop_noise(window_run.tally, self.metric)
            results.append(Tried(label, config, window_run.tally, predicted, skipped, drop, noise,
                                 drop + NOISE_WEIGHT * noise <= self.max_drop + 1e-9))
        self.tried += results
        return results

    def best_on_path(self, path: Sequence[Configuration], deadline: float,
                     on_round: Optional[Callable[[int], object]] = None) -> Optional[Tried]:
        """The configuration of largest gain on ``path`` within the budget, narrowing three at a time on
        the last feasible one (the path's feasibility is assumed to fall once as the gain grows); stops
        early, with the best found so far, when ``time.monotonic()`` passes ``deadline``."""
        low, high, best = -1, len(path), None  # path[low] feasible (or none), path[high] not (or past the end)
        while high - low > 1 and time.monotonic() < deadline:
            probes = sorted({low + max(1, round((high - low) * f)) for f in (0.25, 0.5, 0.75)} - {high})
            probes = [p for p in probes if low < p < high]
            results = self.run([(f"path #{p + 1}", path[p]) for p in probes])
            if on_round is not None:
                on_round(len(probes))
            for index, result in zip(probes, results):
                if result.feasible:
                    low, best = index, result
                else:
                    high = index
                    break
        self.cut_short = high - low > 1
        return best
