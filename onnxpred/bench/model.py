"""End-to-end benchmark: an original model and its rewrite, in onnxruntime at the same optimization
level, per layer and whole, on real images.

Per-layer times come from onnxruntime's profiler. In the original model at level ALL a layer's Conv,
its residual Add and its activation run as one fused (NCHWc) node named after one of them or their
outputs (the activation's output for Conv+Relu, the Conv's for Conv+Add+Relu); PredictiveConv keeps
the Conv's node name. onnxruntime inserts layout nodes around custom ops (NCHWc reorders in float
models, NHWC Transposes around its int8 QLinearConvs); their count and time are reported, not hidden.
"""

from __future__ import annotations

import bisect
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import onnx

from .. import op
from ..datasets import PreprocessingSpec, batches, load_dataset
from ..evaluation.evaluate import EligibleLayer, eligible_layers
from ..evaluation.scales import SCALE_IMAGES, preactivation_activity
from ..rewriter.api import rewrite, rewrite_with_summary
from ..rewriter.passes.order_channels import UNOBSERVABLE_ACTIVITY, ordered_by_default
from ..runtime import session
from .libraries import bench_options, bench_session, check_quantized_op
from .timing import WARM_UP_RUNS, time_sessions_in_turn, turns, warm_up

# Layout conversions onnxruntime inserts: NCHWc reorders (float), Transposes to and from NHWC (int8).
REORDER_OPS = ("ReorderInput", "ReorderOutput", "Transpose")


@dataclass
class LayerTime:
    name: str
    original_us: float
    predictive_us: float
    macs_dense: int
    macs_executed: int
    against_us: Optional[float] = None  # PredictiveConv with the --against library

    @property
    def speedup(self) -> float:
        return self.original_us / self.predictive_us if self.predictive_us else float("nan")

    @property
    def against_ratio(self) -> float:
        """The --against library's time over the installed one's (below 1: it is faster)."""
        return self.against_us / self.predictive_us if self.predictive_us else float("nan")

    @property
    def efficiency(self) -> float:
        return self.original_us * self.macs_executed / self.macs_dense / self.predictive_us if self.predictive_us else float("nan")


@dataclass
class ModelTiming:
    threads: int
    original_ms: float
    predictive_ms: float
    layers: list = field(default_factory=list)
    reorder_nodes: dict = field(default_factory=dict)  # model -> count of layout nodes (REORDER_OPS)
    reorder_us: float = 0.0  # time of the reorders in the rewritten model, per image
    peak_rss_mb: dict = field(default_factory=dict)
    against_ms: Optional[float] = None  # the rewritten model with the --against library

    @property
    def speedup(self) -> float:
        return self.original_ms / self.predictive_ms

    @property
    def against_ratio(self) -> float:
        """The --against library's time over the installed one's (below 1: it is faster)."""
        return self.against_ms / self.predictive_ms


def _options(threads: int, optimized_path: Optional[str] = None, profile_prefix: Optional[str] = None,
             library: Optional[str] = None):
    opts = bench_options(threads, library)
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def profile_node_times(model_path: str, feeds_list, threads: int, workdir: str, tag: str,
                       library: Optional[str] = None) -> tuple[dict, Counter]:
    """Mean kernel time per node (µs per image) over the runs of ``feeds_list`` and the op-type counts of
    the optimized graph, with the op library ``library`` (None: the installed one)."""
    return profile_in_turn([(model_path, library, tag)], feeds_list, threads, workdir)[0]


def profile_in_turn(runs: Sequence[tuple[str, Optional[str], str]], feeds_list, threads: int, workdir: str,
                    repeats: int = 1) -> list[tuple[dict, Counter]]:
    """For each (model path, op library or None, tag) of ``runs``: its kernel time per node (µs per image:
    per image the median over ``repeats``, averaged over the images) and the op-type counts of its
    optimized graph. The models run in :func:`~onnxpred.bench.timing.turns`, so that they are compared
    on the same machine: profiled one after the other, a later model's layers had measured 3-7% faster.
    WARM_UP_RUNS runs of each, not counted, warm it up: its large layers pay one-time work in them
    (onnxruntime packs weights, then first touches the buffers its memory patterns planned), which had
    doubled and tripled the stems in the tables."""
    optimized = [os.path.join(workdir, f"{tag}.optimized.onnx") for _, _, tag in runs]
    sessions = [bench_session(path, _options(threads, optimized_path, os.path.join(workdir, tag), library))
                for (path, library, tag), optimized_path in zip(runs, optimized)]
    warm_up(sessions, feeds_list[0])
    for index, which in turns(len(sessions), len(feeds_list), repeats):
        sessions[which].run(None, feeds_list[index])
    results = []
    for sess, optimized_path in zip(sessions, optimized):
        events = json.loads(Path(sess.end_profiling()).read_text())
        ops = Counter(node.op_type for node in onnx.load(optimized_path, load_external_data=False).graph.node)
        results.append((_node_times(events, len(feeds_list), repeats), ops))
    return results


def _node_times(events: list, images: int, repeats: int) -> dict:
    """Per node of a profile whose runs were WARM_UP_RUNS warm-ups, then ``repeats`` passes over
    ``images`` inputs: per image the median over the passes of its kernel time, averaged over the images."""
    starts = sorted(event["ts"] for event in events if event.get("cat") == "Session" and event["name"] == "model_run")
    per_run: dict = {}  # node -> {run: µs}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            run = bisect.bisect_right(starts, event["ts"]) - 1 - WARM_UP_RUNS
            if run >= 0:
                node = per_run.setdefault(event["name"][: -len("_kernel_time")], {})
                node[run] = node.get(run, 0.0) + event["dur"]
    return {name: statistics.fmean(statistics.median(runs.get(r * images + i, 0.0) for r in range(repeats))
                                   for i in range(images))
            for name, runs in per_run.items()}


def _peak_rss_mb(model_path: str, input_name: str, images: np.ndarray, threads: int) -> float:
    """Peak resident memory of a fresh process that builds a session and runs the images: its VmHWM, the
    high-water mark of its own address space. (Linux hands a child the ru_maxrss of the parent it was
    forked from, so that figure was this benchmark's own size, the same for every model.)"""
    with tempfile.NamedTemporaryFile(suffix=".npy", delete=False) as f:
        np.save(f, images)
    script = (
        "import os, resource, sys, numpy as np, onnxruntime as ort, onnxpred\n"
        "o = onnxpred.session_options(intra_op_num_threads=int(sys.argv[3]), "
        "graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL)\n"
        "s = ort.InferenceSession(sys.argv[1], sess_options=o, providers=['CPUExecutionProvider'])\n"
        "x = np.load(sys.argv[2])\n"
        "for i in range(len(x)): s.run(None, {sys.argv[4]: x[i:i+1]})\n"
        "status = '/proc/self/status'\n"
        "hwm = [line.split()[1] for line in open(status) if line.startswith('VmHWM:')] if os.path.exists(status) else []\n"
        "print(hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", script, model_path, f.name, str(threads), input_name],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    return int(out.strip().splitlines()[-1]) / 1024


def benchmark_model(model_path: str, window: int, data: Optional[str] = None, images: int = 8,
                    threads: Sequence[int] = (1, 2), repeats: int = 3, clock: str = "wall",
                    against: Optional[str] = None, order_channels: Optional[bool] = None,
                    say: Callable[[str], None] = lambda text: None) -> list[ModelTiming]:
    """Times ``model_path`` and its rewrite with ``window`` at each thread count, end to end by ``clock``
    (:func:`time_sessions_in_turn`); with ``against`` (another op library's path) the rewrite with that
    library too, in turn with the other two. ``order_channels``: the rewrite's channels ordered by their
    activity on the data's images after the timed ones (on the timed ones if there are no others); None:
    for int8 models (:func:`~onnxpred.rewriter.passes.order_channels.ordered_by_default`). ``say`` is
    told when they are."""
    model = onnx.load(model_path)
    spec = PreprocessingSpec.from_model(model)
    every_image = load_dataset(data)
    dataset = every_image[:images]
    activity = None
    if order_channels is not False:  # the window-1 rewrite, which measuring needs, also decides None
        plain = rewrite(model, window=1)
        if order_channels or ordered_by_default(plain):
            calibration = every_image[images:images + SCALE_IMAGES] or dataset
            activity = preactivation_activity(model, plain, calibration, spec)
            say(f"channels ordered by their activity on the images after the first {images} of the data "
                "(on those if there are no others)" if activity else UNOBSERVABLE_ACTIVITY)
    # Timed as deployed, with no counters output (the kernels skip counting where no one reads it);
    # the MACs each layer executes come from a copy that exposes them.
    rewritten, _ = rewrite_with_summary(model, window=window, channels_last=True, channel_activity=activity)
    if against and op.has_quantized_layers(rewritten):
        check_quantized_op(against)
    counting, _ = rewrite_with_summary(model, window=window, expose_counters=True, channels_last=True,
                                       channel_activity=activity)
    input_name = model.graph.input[0].name
    pixels = np.concatenate([array for array, _ in batches(dataset, spec, 1)])
    feeds_list = [{input_name: pixels[i : i + 1]} for i in range(len(pixels))]
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        predictive_path = os.path.join(workdir, "rewritten.onnx")
        onnx.save(rewritten, predictive_path)
        layers = eligible_layers(counting)
        layer_macs = _layer_macs(counting, layers, feeds_list)
        del counting
        for n_threads in threads:
            timed = [(model_path, None), (predictive_path, None)] + ([(predictive_path, against)] if against else [])
            sessions = [bench_session(path, _options(n_threads, library=library)) for path, library in timed]
            original_ms, predictive_ms, *against_ms = time_sessions_in_turn(sessions, feeds_list, repeats, clock)
            del sessions  # the profiled sessions below are as many again, and large models hold gigabytes each
            profiled = [(model_path, None, "original"), (predictive_path, None, "rewritten")]
            profiled += [(predictive_path, against, "against")] if against else []
            (original_nodes, original_ops), (predictive_nodes, predictive_ops), *against_profile = profile_in_turn(
                profiled, feeds_list, n_threads, workdir, repeats)
            against_nodes = against_profile[0][0] if against else {}
            timing = ModelTiming(n_threads, original_ms, predictive_ms, against_ms=against_ms[0] if against else None)
            original_us = original_layer_times(model, layers, original_nodes)
            for layer, (dense, executed), us in zip(layers, layer_macs, original_us):
                timing.layers.append(LayerTime(layer.name, us, predictive_nodes.get(layer.name, 0.0), dense, executed,
                                               against_nodes.get(layer.name, 0.0) if against else None))
            timing.reorder_nodes = {"original": sum(original_ops[o] for o in REORDER_OPS),
                                    "rewritten": sum(predictive_ops[o] for o in REORDER_OPS)}
            timing.reorder_us = layout_us(predictive_nodes)
            timing.peak_rss_mb = {"original": _peak_rss_mb(model_path, input_name, pixels, n_threads),
                                  "rewritten": _peak_rss_mb(predictive_path, input_name, pixels, n_threads)}
            results.append(timing)
    return results


def layout_us(node_times: dict) -> float:
    """The profiled time (µs per image) of the layout nodes onnxruntime inserted: NCHWc reorders and the
    Transposes to and from NHWC around int8 layers (its optimized graph names them after their kind)."""
    return sum(us for name, us in node_times.items() if any(kind in name.lower() for kind in ("reorder", "transpose")))


def _layer_macs(model: onnx.ModelProto, layers: Sequence[EligibleLayer], feeds_list) -> list[tuple[int, int]]:
    """(macs_dense, macs_executed) of each layer, from its exposed counters summed over the images."""
    sess = session(model)
    names = [layer.counters for layer in layers]
    totals = np.zeros((len(names), len(op.COUNTER_NAMES)), np.int64)
    for feeds in feeds_list:
        totals += np.stack(sess.run(names, feeds))
    dense, executed = op.COUNTER_NAMES.index("macs_dense"), op.COUNTER_NAMES.index("macs_executed")
    return [(int(row[dense]), int(row[executed])) for row in totals]


def original_layer_times(model: onnx.ModelProto, layers: Sequence[EligibleLayer], node_times: dict) -> list[float]:
    """The original's profiled node times (``node_times``, by node name) summed per rewritten layer.

    The optimized graph names a fused node after one of the nodes it fuses or their outputs, with a
    suffix ("<conv output>_nchwc"): the keys are the names and outputs of the chain from the layer's
    Conv (named as its PredictiveConv) to its activation's output, and a node belongs to the layer of the
    longest key that is its name or its prefix before an underscore (a longer key names a later node).
    """
    consumers: dict = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    by_name = {node.name: node for node in model.graph.node}
    keys: dict[str, int] = {}
    for index, layer in enumerate(layers):
        chain, node = [], by_name.get(layer.name)
        while node is not None and len(chain) < 3:  # Conv[->Add]->activation
            chain.append(node)
            following = consumers.get(node.output[0], [])
            node = following[0] if node.output[0] != layer.activation and len(following) == 1 else None
        if not chain or chain[-1].output[0] != layer.activation:
            chain = []  # not the original's chain: the layer's own names only
        for name in [layer.name, layer.activation] + [n for node in chain for n in (node.name, node.output[0])]:
            keys[name] = index
    times = [0.0] * len(layers)
    for name, us in node_times.items():
        matches = [key for key in keys if name == key or name.startswith(key + "_")]
        if matches:
            times[keys[max(matches, key=len)]] += us
    return times
