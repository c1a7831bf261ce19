"""The search space of one layer and its screening.

Every eligible layer is either left as onnxruntime's own Conv or becomes a PredictiveConv with one of the
candidate predictors: a window k > 1, a sampling pattern and a margin (absolute, or in units of the
layer's pre-activation standard deviation). Measuring every candidate of every layer in the whole model
would be far too slow (six patterns × four margins × four windows is 96 per layer), so each layer's
candidates are first *screened* on a few images with the NumPy reference of the prediction rule
(:func:`onnxpred.reference.predict`) applied to the layer's pre-activation in the original model: the
share of outputs it predicts and the share of the activation's energy (Σ A²) it sets to zero. Only
candidates on that trade-off's frontier, spread from mild to aggressive, go on to be measured in the
whole model (:mod:`.sensitivity`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import onnx

from .. import op
from ..errors import UserError
from ..reference import activate, predict, sampling_pattern
from ..rewriter.selection import Margin, Predictor, check_window
from ..runtime import quiet_options, session
from ..evaluation.evaluate import with_outputs
from ..evaluation.scales import preactivation_tensors

DEFAULT_WINDOWS = (1, 2, 3, 4, 5)
DEFAULT_MARGINS = ("0", "0.25sd", "0.5sd", "1sd")
# Candidates predicting less than this share of a layer's outputs are not worth a measurement.
MIN_PREDICTED_SHARE = 0.002


@dataclass(frozen=True)
class SearchSpace:
    """Candidate predictors of every layer; window 1 (no prediction) is always the alternative of leaving
    the layer as onnxruntime's Conv, which the search covers without a candidate."""

    windows: tuple[int, ...]
    patterns: tuple[str, ...]
    margins: tuple[Margin, ...]

    @classmethod
    def create(cls, windows: Sequence[int] = DEFAULT_WINDOWS, patterns: Optional[Sequence[str]] = None,
               margins: Sequence[object] = DEFAULT_MARGINS) -> "SearchSpace":
        checked = sorted({check_window(int(k), "window") for k in windows} - {1})
        if not checked:
            raise UserError("give at least one window larger than 1 (window 1 is no prediction)")
        patterns = tuple(dict.fromkeys(op.PATTERNS if patterns is None else patterns))
        for pattern in patterns:
            if pattern not in op.PATTERNS:
                raise UserError(f"unknown pattern {pattern!r} (known: {', '.join(op.PATTERNS)})")
        parsed = tuple(dict.fromkeys(Margin.parse(m) for m in margins)) or (Margin(),)
        return cls(tuple(checked), patterns or (op.ATTRIBUTES["pattern"].default,), parsed)

    @property
    def needs_scales(self) -> bool:
        return any(margin.in_sd for margin in self.margins)

    def candidates(self) -> list[Predictor]:
        return [Predictor(k, pattern, margin) for k in self.windows for pattern in self.patterns
                for margin in self.margins]

    def to_json(self) -> dict:
        return {"windows": list(self.windows), "patterns": list(self.patterns),
                "margins": [str(margin) for margin in self.margins]}


@dataclass(frozen=True)
class Screened:
    """A candidate's effect on its layer alone, on the screening images."""

    predictor: Predictor
    predicted_share: float  # of the layer's outputs
    energy_lost: float  # Σ A² of the predicted outputs over Σ A² of the layer


def screen(
    original: onnx.ModelProto,
    rewritten: onnx.ModelProto,
    pixels: Sequence[np.ndarray],
    space: SearchSpace,
    *,
    keep: int,
    scales: Optional[Mapping[str, float]] = None,
    threads: Optional[int] = None,
) -> dict[str, list[Screened]]:
    """Up to ``keep`` candidates per PredictiveConv of ``rewritten`` (every eligible layer, at window 1),
    chosen on the frontier of predicted share against energy lost on the batches ``pixels``."""
    tensors = preactivation_tensors(original, rewritten)
    nodes = {node.name: node for node in rewritten.graph.node if op.is_contract_op(node)}
    names = list(dict.fromkeys(tensors.values()))
    sess = session(with_outputs(original, names), **quiet_options(threads or 0))
    feed = sess.get_inputs()[0].name
    outputs = [sess.run(names, {feed: batch}) for batch in pixels]
    by_tensor = {name: np.concatenate([batch[i] for batch in outputs]) for i, name in enumerate(names)}
    chosen = {}
    for layer, tensor in tensors.items():
        attributes = op.node_attributes(nodes[layer])
        p = by_tensor[tensor].astype(np.float32)
        # A PredictiveQLinearConv has no activation attribute: its clamp at the quantized zero is a Relu in real
        # units, and its zero samples (those that round to the zero point) are screened as P <= -margin.
        a = activate(p, attributes.get("activation", "Relu"), attributes.get("clip_max", math.inf))
        measured = []
        for window in space.windows:
            geometry = _Windows(p, a, window)
            for pattern in space.patterns:
                for margin, share, lost in geometry.effects(pattern, space.margins, layer, scales):
                    measured.append(Screened(Predictor(window, pattern, margin), share, lost))
        chosen[layer] = frontier_spread(measured, keep)
    return chosen


class _Windows:
    """One layer's pre-activation ``p`` and activation ``a`` [N, C, H, W] cut into k × k windows, each offset
    (i, j) of a window a strided [N, C, rows, cols] view; positions past the plane hold no sample."""

    def __init__(self, p: np.ndarray, a: np.ndarray, window: int):
        n, c, height, width = p.shape
        self.k, self.size = window, p.size
        self.rows, self.cols = -(-height // window), -(-width // window)
        shape = (n, c, self.rows * window, self.cols * window)
        self.p = np.full(shape, -np.inf, np.float32)  # -inf: past the plane, never the largest sample
        self.p[:, :, :height, :width] = p
        self.energy = np.zeros(shape, np.float32)
        self.energy[:, :, :height, :width] = np.square(a)
        self.valid = np.zeros(shape[2:], bool)
        self.valid[:height, :width] = True
        self.window_energy = sum(self._at(self.energy, i, j) for i in range(window) for j in range(window))
        self.total_energy = float(self.window_energy.sum(dtype=np.float64))

    def _at(self, values: np.ndarray, i: int, j: int) -> np.ndarray:
        return values[..., i::self.k, j::self.k]

    def effects(self, pattern: str, margins: Sequence[Margin], layer: str,
                scales: Optional[Mapping[str, float]]) -> list[tuple[Margin, float, float]]:
        """(margin, predicted share, energy lost) of ``pattern`` at every margin: a window triggers when the
        largest pre-activation among its samples inside the plane is at most −margin (the rule of
        :func:`onnxpred.reference.predict`, which the tests compare this with)."""
        offsets = list(zip(*np.nonzero(sampling_pattern(pattern, self.k))))
        largest = np.maximum.reduce([self._at(self.p, i, j) for i, j in offsets])
        sample_count = sum(self._at(self.valid, i, j).astype(np.int64) for i, j in offsets)
        largest[:, :, sample_count == 0] = np.inf  # no sample inside the plane: never triggered
        rest_energy = self.window_energy - sum(self._at(self.energy, i, j) for i, j in offsets)
        window_count = sum(self._at(self.valid, i, j).astype(np.int64) for i in range(self.k) for j in range(self.k))
        rest_count = window_count - sample_count
        effects = []
        for margin in margins:
            triggered = largest <= -np.float32(margin.resolve(layer, scales))
            share = float((triggered * rest_count).sum()) / self.size
            lost = float(rest_energy[triggered].sum(dtype=np.float64)) / self.total_energy if self.total_energy else 0.0
            effects.append((margin, share, lost))
        return effects


def frontier_spread(measured: Sequence[Screened], keep: int) -> list[Screened]:
    """The candidates no other one beats on both predicted share and energy lost, thinned to ``keep``
    spread evenly in predicted share from the mildest to the most aggressive, by increasing share."""
    useful = [m for m in measured if m.predicted_share >= MIN_PREDICTED_SHARE]
    frontier: list[Screened] = []
    for item in sorted(useful, key=lambda m: (m.energy_lost, -m.predicted_share)):
        if not frontier or item.predicted_share > frontier[-1].predicted_share:
            frontier.append(item)
    if len(frontier) <= keep:
        return frontier
    shares = np.array([item.predicted_share for item in frontier])
    picked = sorted({int(np.argmin(np.abs(shares - target))) for target in np.linspace(shares[0], shares[-1], keep)})
    return [frontier[index] for index in picked]
