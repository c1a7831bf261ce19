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


def test_without_any_drop_to_calibrate_with_the_count_is_judged_with_a_margin_for_noise():
    """A drop of 0.5 points from 1 changed image keeps a 1-point budget; the same drop with 16 changed
    images (standard error 4/200 = 2 points) does not."""
    def tried(changed):
        search = _NoModels(None, None, [], lambda models: _evaluation([(1, changed, 0.0)]), "top1", 1.0)
        return search.run([("x", {})])[0]

    assert tried(1).feasible and not tried(16).feasible
    assert tried(16).to_json(None)["judged_drop_points"] == pytest.approx(0.5 + 0.5 * 2.0)


# (top-1 lost, images changed, mean KL) of runs on 300 images whose drop grows as about 35 points per unit of KL,
# and two whose count strays from that: a lucky one and an unlucky one.
STEADY = [(1, 3, 0.01), (2, 6, 0.02), (6, 15, 0.05), (9, 22, 0.075)]
LUCKY, UNLUCKY = (0, 10, 0.045), (4, 8, 0.015)


def test_runs_are_judged_by_their_kl_through_the_drop_it_predicts():
    search = _NoModels(None, None, [], lambda models: _evaluation(STEADY + [LUCKY, UNLUCKY], images=300),
                       "top1", 1.0)
    *steady, lucky, unlucky = search.run([(f"#{i}", {}) for i in range(6)])
    beta = search.drop_model.points_per_kl
    assert beta == pytest.approx(100 * (18 + 4) / 300 / (0.155 + 0.045 + 0.015))  # pooled Σ drop / Σ KL
    assert lucky.drop_points == 0 and lucky.estimate_points == pytest.approx(beta * 0.045)
    assert lucky.estimate_points > 1.0
    assert not lucky.feasible  # its own count (0 points) would have kept the budget
    assert unlucky.drop_points > 1.0 and unlucky.feasible  # its count alone would not have
    assert [t.feasible for t in steady] == [True, True, False, False]


def test_the_drop_model_pools_only_runs_near_the_budget():
    """A wrecked configuration (its drop saturated far past the budget) does not flatten β."""
    wrecked = (210, 250, 5.0)
    search = _NoModels(None, None, [], lambda models: _evaluation(STEADY + [wrecked], images=300), "top1", 1.0)
    *_, judged = search.run([(f"#{i}", {}) for i in range(5)])
    model = search.drop_model
    assert model.points_per_kl == pytest.approx(100 * 18 / 300 / 0.155) and model.runs == 4
    assert 0.075 <= model.reach_kl < 5.0
    assert judged.estimate_points == pytest.approx(70.0) and not judged.feasible  # beyond the reach: its count


def test_a_budget_of_zero_keeps_only_runs_that_change_nothing():
    search = _NoModels(None, None, [], lambda models: _evaluation(STEADY + [(0, 0, 0.0)], images=300), "top1", 0.0)
    results = search.run([(f"#{i}", {}) for i in range(5)])
    assert [t.feasible for t in results] == [False, False, False, False, True]


def _evaluation(runs, images=200):
    """An evaluation of the original (75% top-1) and of runs given as (top-1 lost, images changed, mean KL)."""
    evaluation = type("E", (), {})()
    evaluation.original = AccuracyTally(images=images, labelled=images, top1=images * 3 // 4)
    evaluation.windows = []
    for lost, changed, kl in runs:
        run = type("R", (), {})()
        run.tally = AccuracyTally(images=images, labelled=images, top1=images * 3 // 4 - lost,
                                  agreement=images - changed, kl_sum=kl * images)
        run.counters = np.zeros((1, 7), dtype=np.int64)
        evaluation.windows.append(run)
    return evaluation
