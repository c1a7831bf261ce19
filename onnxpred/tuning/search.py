"""Combining the layers' candidates into one configuration within the accuracy budget.

Each layer's measured candidates (:mod:`.sensitivity`) have a gain (the objective: predicted MACs, MACs
the kernels skip, or µs saved) and a cost (the KL divergence they cause alone). For a price λ every layer
takes the candidate with the largest ``gain − λ · cost``, or stays onnxruntime's Conv when none is
positive; lowering λ from infinity to zero gives a path of configurations of growing gain (the Lagrangian
relaxation of the knapsack "most gain for a total cost"). KL divergences add up only roughly, so the
path is not trusted for accuracy: its configurations are run on the whole tuning part, three at a time
in one :func:`onnxpred.evaluation.evaluate.evaluate` pass, narrowing on the last one within the budget.
Every configuration run is kept for the report.

**Judging the budget.** A few hundred images measure one configuration's drop only to about a point (at
a one-point drop, a handful of images changed their class), and the narrowing favours configurations
whose measured drop happened to be low. The whole model's KL divergence from the original on the tuning
images, which every run also measures, moves smoothly with the configuration; over the configurations
run, the drop grows in proportion to it (:class:`DropModel`, ``drop ≈ β · KL``, β pooled over every run
near the budget). A configuration is judged by that estimate plus half its standard error, not by its
own noisy count; where no drop was seen at all there is nothing to calibrate with and the count itself
(plus half its standard error) is judged.
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
# A configuration keeps the budget when its estimated drop plus this many standard errors does.
NOISE_WEIGHT = 0.5
# The drop is proportional to the KL divergence only near the budget (a wrecked model's drop saturates):
# β is pooled over the runs whose KL is at most this many times the KL at which the budget is reached.
CALIBRATION_REACH = 4.0
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
    kl: float  # mean KL divergence of the softmax from the original's
    estimate_points: float = float("nan")  # the drop as judged (see :class:`DropModel`), with ...
    estimate_noise: float = float("nan")  # ... its standard error
    feasible: bool = False

    @property
    def judged_points(self) -> float:
        """What the budget is held against: the estimated drop plus :data:`NOISE_WEIGHT` standard errors."""
        return self.estimate_points + NOISE_WEIGHT * self.estimate_noise

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
                "drop_points": self.drop_points, "noise_points": self.noise_points, "kl": self.kl,
                "estimated_drop_points": self.estimate_points, "estimate_noise_points": self.estimate_noise,
                "judged_drop_points": self.judged_points,
                "feasible": self.feasible}


def metric_points(tally: AccuracyTally, metric: str) -> float:
    """The metric in points (0..100); top-1 over the labelled images, agreement over all."""
    if metric == "top1":
        return 100.0 * tally.top1 / tally.labelled if tally.labelled else float("nan")
    return 100.0 * tally.agreement / tally.images if tally.images else float("nan")


def drop_noise(tally: AccuracyTally, metric: str) -> float:
    """Standard error of the drop of ``metric`` in points, from the images whose top-1 class changed: each
    changes the paired difference by at most one, so its variance is at most changed / n²."""
    trials = tally.labelled if metric == "top1" else tally.images
    return 100.0 * math.sqrt(tally.changed) / trials if trials else float("inf")


def counted_macs(counters: np.ndarray, images: int) -> tuple[float, float]:
    """(predicted, skipped) MACs per image from the counters [layers, 7] summed over ``images``."""
    predicted = float(predicted_macs(counters))
    skipped = float((counters[:, _DENSE] - counters[:, _EXECUTED]).sum())
    return predicted / max(images, 1), skipped / max(images, 1)


@dataclass(frozen=True)
class DropModel:
    """``drop ≈ points_per_kl · KL``, fitted on configurations run on the same images.

    β is the pooled ratio Σ drop / Σ KL over the runs whose KL is at most :data:`CALIBRATION_REACH` times the
    KL at which the estimate reaches the budget (found by iterating from all runs); runs beyond that reach are
    judged by their own count. Its relative standard error is taken as 1/√(images changed, summed over those
    runs): the changed images are the events the drop is counted from. ``points_per_kl`` is None when those
    runs show no drop (nothing to calibrate with), as when a model's softmax is so flat that its KL
    divergence says nothing about its top-1 class.
    """

    points_per_kl: Optional[float]
    reach_kl: float  # the runs fitted on have at most this KL
    runs: int
    changed: int

    @classmethod
    def fit(cls, tried: Sequence["Tried"], max_drop: float) -> "DropModel":
        pool = [t for t in tried if t.kl > 0 and math.isfinite(t.drop_points)]
        reach, beta, fitted = math.inf, None, []
        for _ in range(8):  # the reach settles in a few rounds
            fitted = [t for t in pool if t.kl <= reach]
            drop, kl = sum(t.drop_points for t in fitted), sum(t.kl for t in fitted)
            if drop <= 0 or kl <= 0:
                return cls(None, reach, len(fitted), 0)
            beta = drop / kl
            new_reach = CALIBRATION_REACH * max(max_drop, 1.0) / beta
            if new_reach == reach:
                break
            reach = new_reach
        return cls(beta, reach, len(fitted), sum(t.tally.changed for t in fitted))

    def judge(self, tried: "Tried") -> tuple[float, float]:
        """(estimated drop, its standard error) of one run, in points: from its KL within the reach, from
        its own count beyond it (where the drop saturates) or when there is nothing to calibrate with."""
        if self.points_per_kl is None or tried.kl > self.reach_kl:
            return tried.drop_points, tried.noise_points
        estimate = self.points_per_kl * tried.kl
        return estimate, estimate / math.sqrt(max(self.changed, 1))

    def to_json(self) -> dict:
        reach = self.reach_kl if math.isfinite(self.reach_kl) else None
        return {"points_per_kl": self.points_per_kl, "reach_kl": reach, "runs": self.runs,
                "changed_images": self.changed}


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
    drop_model: DropModel = field(init=False)  # fitted on every run so far

    def __post_init__(self):
        self.drop_model = DropModel.fit([], self.max_drop)

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
                                 window_run.tally.mean_kl))
        self.tried += results
        self.judge()
        return results

    def judge(self) -> None:
        """Refits the drop model on every run so far and judges each run with it."""
        self.drop_model = DropModel.fit(self.tried, self.max_drop)
        for tried in self.tried:
            tried.estimate_points, tried.estimate_noise = self.drop_model.judge(tried)
            tried.feasible = tried.judged_points <= self.max_drop + 1e-9

    def best_on_path(self, path: Sequence[Configuration], deadline: float,
                     on_round: Optional[Callable[[int], object]] = None) -> Optional[Tried]:
        """The configuration of largest gain on ``path`` within the budget, narrowing three at a time on
        the last feasible one (the path's feasibility is assumed to fall once as the gain grows; every run
        is judged again as the drop model learns); stops early, with the best found so far, when
        ``time.monotonic()`` passes ``deadline``."""
        runs: dict[int, Tried] = {}

        def bracket() -> tuple[int, int]:  # path[low] feasible (or none), path[high] not (or past the end)
            low = max((index for index, t in runs.items() if t.feasible), default=-1)
            return low, min((index for index, t in runs.items() if index > low and not t.feasible), default=len(path))

        low, high = bracket()
        while high - low > 1 and time.monotonic() < deadline:
            probes = sorted({low + max(1, round((high - low) * f)) for f in (0.25, 0.5, 0.75)} - {high})
            probes = [p for p in probes if low < p < high]
            runs.update(zip(probes, self.run([(f"path #{p + 1}", path[p]) for p in probes])))
            if on_round is not None:
                on_round(len(probes))
            low, high = bracket()
        self.cut_short = high - low > 1
        return runs.get(low)
