"""The Lagrangian path and the narrowing on it, with measured candidates and runs made up."""

from __future__ import annotations

import time

import numpy as np
import pytest

from onnxpred.evaluation.evaluate import AccuracyTally
from onnxpred.rewriter.selection import Predictor
from onnxpred.tuning.search import Search, Tried, gain_of, lagrangian_path
from onnxpred.tuning.sensitivity import Measured


def _measured(layer: str, window: int, kl: float, macs: float) -> Measured:
    return Measured(layer, Predictor(window), kl, 1.0, macs, macs / 2)


OPTIONS = {
    "a": [_measured("a", 2, 0.001, 10.0), _measured("a", 4, 0.1, 30.0)],
    "b": [_measured("b", 2, 0.01, 10.0), _measured("b", 3, 0.02, 12.0)],
    "c": [_measured("c", 2, 0.5, 1.0)],  # poor value: enters last
    "d": [_measured("d", 2, 0.0, 0.0)],  # no gain: never chosen
}


def test_path_grows_in_gain_and_adds_the_best_value_first():
    path = lagrangian_path(OPTIONS, gain_of("macs"))
    gains = [sum(m.predicted_macs for m in config.values()) for config in path]
    assert gains == sorted(gains) and len(set(gains)) == len(gains)
    assert list(path[0]) == ["a"] and path[0]["a"].predictor.window == 2
    assert {layer: m.predictor.window for layer, m in path[-1].items()} == {"a": 4, "b": 3, "c": 2}
    assert all("d" not in config for config in path)
    assert "c" not in path[-2]


def test_latency_path_uses_only_candidates_that_save_time():
    assert lagrangian_path(OPTIONS, gain_of("latency")) == []  # nothing timed: nothing saves time


def test_narrowing_finds_the_last_configuration_within_budget():
    path = [{"a": _measured("a", 2, 0.0, float(i))} for i in range(40)]
    runs = []

    def run_images(models):
        runs.append(len(models))
        evaluation = type("E", (), {})()
        evaluation.original = AccuracyTally(images=100, labelled=100, top1=80)
        evaluation.windows = []
        for label, _ in models:
            index = int(label.split("#")[1]) - 1
            tally = AccuracyTally(images=100, labelled=100, top1=80 - (2 if index > 26 else 0),
                                  agreement=100 - (2 if index > 26 else 0))
            run = type("R", (), {})()
            run.tally, run.counters = tally, np.zeros((1, 7), dtype=np.int64)
            evaluation.windows.append(run)
        return evaluation

    search = _NoModels(None, None, [], run_images, "top1", 1.0)
    best = search.best_on_path(path, time.monotonic() + 60)
    assert isinstance(best, Tried) and best.label == "path #27"
    assert all(t.feasible == (int(t.label.split("#")[1]) <= 27) for t in search.tried)
    assert sum(runs) <= 12  # three at a time, not one run per configuration


class _NoModels(Search):
    def model_for(self, config):
        return None


def test_the_budget_is_judged_with_a_margin_for_noise():
    """A drop of 0.5 points from 1 changed image keeps a 1-point budget; the same drop with 16 changed
    images (standard error 4/200 = 2 points) does not."""
    def tried(changed):
        search = _NoModels(None, None, [], lambda models: _evaluation(changed), "top1", 1.0)
        return search.run([("x", {})])[0]

    assert tried(1).feasible and not tried(16).feasible
    assert tried(16).to_json(None)["judged_drop_points"] == pytest.approx(0.5 + 0.5 * 2.0)


def _evaluation(changed):
    evaluation = type("E", (), {})()
    evaluation.original = AccuracyTally(images=200, labelled=200, top1=150)
    run = type("R", (), {})()
    run.tally = AccuracyTally(images=200, labelled=200, top1=149, agreement=200 - changed)
    run.counters = np.zeros((1, 7), dtype=np.int64)
    evaluation.windows = [run]
    return evaluation
