"""Time in onnxruntime: what one layer's prediction saves inside the model, and the tuned model against
the original end to end.

Per layer, as ``onnxpred bench`` attributes it (:mod:`onnxpred.bench.model`): onnxruntime's profiler
gives each node's kernel time; in the original a Conv and its activation (or its int8 form) run as one
fused node, attributed to the layer by :func:`onnxpred.bench.model.original_layer_times`. A model with
only that layer rewritten also runs the layout nodes onnxruntime inserts around a custom op (NCHWc
reorders; NHWC Transposes around int8 layers): their time beyond the original's is charged to the layer.
End to end: both sessions run in turn on the same images (:func:`onnxpred.bench.timing.time_in_turn`), at
every thread count asked.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import onnx

from ..bench.model import layout_us, original_layer_times, profile_node_times
from ..bench.timing import time_in_turn
from ..evaluation.evaluate import EligibleLayer
from ..runtime import quiet_options, session


@dataclass(frozen=True)
class LayerTime:
    """One layer per image, µs: onnxruntime's fused Conv, the PredictiveConv and the extra layout nodes."""

    original_us: float
    predictive_us: float
    reorder_us: float

    @property
    def saved_us(self) -> float:
        return self.original_us - self.predictive_us - self.reorder_us

    @property
    def cost_ratio(self) -> float:
        """PredictiveConv's time with its reorders over onnxruntime's time for the layer."""
        return (self.predictive_us + self.reorder_us) / self.original_us if self.original_us else float("inf")

    def to_json(self) -> dict:
        return {"original_us": self.original_us, "predictive_us": self.predictive_us, "reorder_us": self.reorder_us,
                "saved_us": self.saved_us}


@dataclass(frozen=True)
class EndToEnd:
    threads: int
    original_ms: float
    tuned_ms: float

    @property
    def pays(self) -> bool:
        return self.tuned_ms < self.original_ms

    def to_json(self) -> dict:
        return {"threads": self.threads, "original_ms": self.original_ms, "tuned_ms": self.tuned_ms,
                "speedup": self.original_ms / self.tuned_ms if self.tuned_ms else None}


class Timer:
    """Measures time in onnxruntime on this machine; tests substitute their own."""

    def __init__(self, feeds: Sequence[dict], repeats: int = 5):
        """``feeds``: one-image inputs; each profile runs them ``repeats`` times (node times are means),
        each end-to-end timing ``repeats`` times in turn with the original (medians)."""
        self.feeds, self.repeats = list(feeds), repeats
        self._workdir = tempfile.TemporaryDirectory(prefix="onnxpred-tune-")
        self._original: dict = {}

    def close(self) -> None:
        self._workdir.cleanup()

    def _profile(self, model: onnx.ModelProto, threads: int, tag: str) -> dict:
        path = os.path.join(self._workdir.name, f"{tag}.onnx")
        onnx.save(model, path)
        nodes, _ = profile_node_times(path, self.feeds * self.repeats, threads, self._workdir.name, tag)
        return nodes

    def layer(self, original: onnx.ModelProto, rewritten: onnx.ModelProto, layer: EligibleLayer, threads: int,
              skipped_macs: float) -> Optional[LayerTime]:
        """A prediction of ``layer`` (:meth:`kernel`); None without a measurement when its kernels skip no
        MACs (``skipped_macs``): then it is no faster than the same kernel at window 1, and profiling it
        would only take time."""
        return self.kernel(original, rewritten, layer, threads) if skipped_macs > 0 else None

    def kernel(self, original: onnx.ModelProto, rewritten: onnx.ModelProto, layer: EligibleLayer, threads: int,
               fresh_original: bool = False) -> LayerTime:
        """``layer`` in ``rewritten``, where it is the only rewritten layer; with ``fresh_original`` the
        original is profiled again just before, not taken from an earlier profile (which a busy machine
        may have slowed)."""
        if fresh_original or threads not in self._original:
            self._original[threads] = self._profile(original, threads, f"original{threads}")
        original_nodes = self._original[threads]
        nodes = self._profile(rewritten, threads, "layer")
        (fused,) = original_layer_times(original, [layer], original_nodes)
        extra_layout = max(0.0, layout_us(nodes) - layout_us(original_nodes))
        return LayerTime(fused, nodes.get(layer.name, 0.0), extra_layout)

    def end_to_end(self, original: onnx.ModelProto, tuned: onnx.ModelProto, threads: int) -> EndToEnd:
        first = session(original, **quiet_options(threads))
        second = session(tuned, **quiet_options(threads))
        original_ms, tuned_ms = time_in_turn(first, second, self.feeds, self.repeats)
        return EndToEnd(threads, original_ms, tuned_ms)


def single_image_feeds(pixels: Sequence[np.ndarray], input_name: str, count: int) -> list[dict]:
    """Up to ``count`` one-image feeds from the batches ``pixels`` (latency is per image)."""
    images = np.concatenate(list(pixels))[:count]
    return [{input_name: images[i:i + 1]} for i in range(len(images))]
