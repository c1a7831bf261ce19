"""Each candidate's effect on the whole model, one layer at a time.

For every layer a model with only that layer rewritten (the others stay onnxruntime's Conv) runs the
sensitivity images once per candidate predictor. Sensitivity is the mean KL divergence of the model's
softmax from the original's: unlike top-1 or agreement it moves with every image, so a few dozen images
rank candidates that change no top-1 class at all. The op's counters give the MACs the candidate
predicts and the MACs the kernels skip; with objective ``latency`` the profiler gives the time it saves
(:mod:`.timing`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import onnx

from .. import op
from ..evaluation.evaluate import eligible_layers
from ..evaluation.stats import softmax_kl
from ..model_io import payload_bytes
from ..rewriter.api import rewrite, set_windows
from ..rewriter.selection import Predictor
from ..runtime import quiet_options, session
from .timing import LayerTime, Timer

CACHE_BYTES = 2 * 2**30
_PREDICTED, _OUTPUTS, _DENSE, _EXECUTED = (op.COUNTER_NAMES.index(name) for name in
                                          ("predicted", "outputs", "macs_dense", "macs_executed"))


@dataclass(frozen=True)
class Measured:
    """One candidate of one layer, measured in the whole model on the sensitivity images."""

    layer: str
    predictor: Predictor  # margins absolute (resolved)
    kl: float  # mean KL(original softmax || candidate softmax)
    agreement: float  # share of images whose top-1 class is the original's
    predicted_macs: float  # MACs of the predicted outputs, per image
    skipped_macs: float  # MACs the kernels did not execute, per image
    times: Mapping[int, LayerTime] = field(default_factory=dict)  # per thread count (objective latency)
    label: str = ""  # the candidate as the search space wrote it (margins in sd units)

    @property
    def saved_us(self) -> Optional[float]:
        """Time saved per image at the worst thread count; None when not timed."""
        return min(t.saved_us for t in self.times.values()) if self.times else None

    def to_json(self) -> dict:
        return {"predictor": self.predictor.to_json(), "setting": self.label or str(self.predictor),
                "kl": self.kl, "agreement": self.agreement, "predicted_macs": self.predicted_macs,
                "skipped_macs": self.skipped_macs,
                "times": {str(threads): t.to_json() for threads, t in self.times.items()}}


def measure_layers(
    original: onnx.ModelProto,
    candidates: Mapping[str, Sequence[tuple[str, Predictor]]],
    pixels: Sequence[np.ndarray],
    reference_logits: np.ndarray,
    *,
    threads: Optional[int],
    timer: Optional[Timer] = None,
    timing_threads: Sequence[int] = (),
    on_candidate: Optional[Callable[[], object]] = None,
    deadline: Optional[float] = None,
    channel_activity: Optional[Mapping[str, Sequence[float]]] = None,
) -> dict[str, list[Measured]]:
    """``{layer: [Measured]}`` for ``candidates`` = ``{layer: [(label, predictor with an absolute margin)]}``.

    ``pixels``: the sensitivity batches; ``reference_logits``: the original's outputs on them, stacked.
    With ``timer`` each candidate is also timed at every ``timing_threads`` (:meth:`.Timer.layer`). Measuring
    stops when ``time.monotonic()`` passes ``deadline``; for models whose rewrites fit in memory the
    candidates are taken in rounds (each layer's mildest first), so that every layer then has as many
    measured candidates as the time allowed. ``channel_activity``: the timed rewrites' channels are ordered
    by it (``rewrite_with_summary``).
    """
    results: dict[str, list[Measured]] = {layer: [] for layer in candidates}
    singles: dict[str, tuple] = {}
    options = quiet_options(threads or 0)
    output_name = original.graph.output[0].name
    rounds = max((len(choices) for choices in candidates.values()), default=0)
    # Each layer's rewrites are kept for the later rounds unless that would hold over ~2 GB of weights.
    keep_all = payload_bytes(original) * len(candidates) * (2 if timer is not None else 1) < CACHE_BYTES
    # In rounds (every layer's first candidate, then every second one...) when the rewrites stay in memory;
    # layer by layer otherwise, so that each layer is rewritten once.
    order = [(rank, layer) for rank in range(rounds) for layer in candidates] if keep_all else \
        [(rank, layer) for layer in candidates for rank in range(rounds)]
    for rank, layer in order:
        choices = candidates[layer]
        if rank >= len(choices):
            continue
        if deadline is not None and time.monotonic() > deadline:
            return results
        if layer not in singles:
            if not keep_all:
                singles.clear()  # a large model: one layer's rewrites in memory at a time
            single = rewrite(original, window=1, layers=[layer], expose_counters=True)
            # Timed as deployed: int8 layers channels last, as `rewrite` and the tuned model write them.
            plain = (rewrite(original, window=1, layers=[layer], channels_last=True, channel_activity=channel_activity)
                     if timer is not None else None)
            singles[layer] = (single, plain, *eligible_layers(single))
        single, plain, eligible = singles[layer]
        label, predictor = choices[rank]
        sess = session(set_windows(single, {layer: predictor}), **options)
        feed = sess.get_inputs()[0].name
        logits, counters = [], np.zeros(len(op.COUNTER_NAMES), np.int64)
        for batch in pixels:
            out, layer_counters = sess.run([output_name, eligible.counters], {feed: batch})
            logits.append(out)
            counters += layer_counters
        logits = np.concatenate(logits)
        images = len(logits)
        per_output = counters[_DENSE] / counters[_OUTPUTS] if counters[_OUTPUTS] else 0.0
        skipped = (counters[_DENSE] - counters[_EXECUTED]) / images
        times = {}
        if timer is not None:
            timed = set_windows(plain, {layer: predictor})
            layer_times = {t: timer.layer(original, timed, eligible, t, skipped_macs=skipped)
                           for t in timing_threads}
            times = {t: value for t, value in layer_times.items() if value is not None}
        results[layer].append(Measured(
            layer, predictor, float(np.mean(softmax_kl(reference_logits, logits))),
            float(np.mean(logits.argmax(axis=1) == reference_logits.argmax(axis=1))),
            counters[_PREDICTED] * per_output / images, skipped, times, label))
        if on_candidate is not None:
            on_candidate()
    return results
