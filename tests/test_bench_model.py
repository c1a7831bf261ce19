"""The per-layer table of `onnxpred bench` attributes the original's fused nodes to their layers; --clock and
--against add what they say."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_bench_layers import library_copy_mapped_while_timing, timed_session_outputs
from test_cli_rewrite import tiny_classifier

from onnxpred.bench import model as bench_model
from onnxpred.bench.model import _node_times, _peak_rss_mb, profile_node_times, original_layer_times
from onnxpred.cli import main
from onnxpred.errors import EXIT_INPUT, EXIT_USAGE
from onnxpred.evaluation.evaluate import eligible_layers
from onnxpred.rewriter.api import rewrite_with_summary


def residual_model(channels: int = 32, size: int = 28) -> onnx.ModelProto:
    """X -> conv1 -> Relu -> conv2 -> Add(X) -> Relu: a ResNet basic block."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.normal(0, 0.1, (channels, channels, 3, 3)).astype(np.float32), name)
        for name in ("W1", "W2")
    ] + [numpy_helper.from_array(np.zeros(channels, np.float32), "B")]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["X", "W1", "B"], ["c1"], name="conv1", **conv),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2", "B"], ["c2"], name="conv2", **conv),
        helper.make_node("Add", ["c2", "X"], ["a2"], name="add2"),
        helper.make_node("Relu", ["a2"], ["Y"], name="relu2"),
    ]
    shape = [1, channels, size, size]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_every_layer_of_a_residual_block_gets_its_original_and_predictive_time(tmp_path):
    model = residual_model()
    rewritten, _ = rewrite_with_summary(model, window=3, expose_counters=True)
    original_path, rewritten_path = str(tmp_path / "original.onnx"), str(tmp_path / "rewritten.onnx")
    onnx.save(model, original_path)
    onnx.save(rewritten, rewritten_path)
    x = np.random.default_rng(1).normal(size=(1, 32, 28, 28)).astype(np.float32)
    feeds = [{"X": x}] * 2
    original_nodes, _ = profile_node_times(original_path, feeds, 1, str(tmp_path), "original")
    predictive_nodes, _ = profile_node_times(rewritten_path, feeds, 1, str(tmp_path), "rewritten")
    layers = eligible_layers(rewritten)
    assert [layer.name for layer in layers] == ["conv1", "conv2"]
    original_us = original_layer_times(model, layers, original_nodes)
    assert all(us > 0 for us in original_us), (original_us, sorted(original_nodes))
    assert all(predictive_nodes.get(layer.name, 0) > 0 for layer in layers), sorted(predictive_nodes)
    # Each original node is counted once: the two layers together take no more than the whole graph.
    assert sum(original_us) <= sum(original_nodes.values())


def test_node_times_take_each_images_median_over_the_passes_after_the_warm_up():
    """Two warm-up runs (not counted), then two passes over two images: per image the median of its
    passes (of two: their mean), averaged over the images; a node's events within a run add up."""
    def run(start):
        return {"cat": "Session", "name": "model_run", "ts": start, "dur": 90}

    def node(name, ts, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur}

    durations = [1000, 1000, 10, 30, 14, 50]  # warm-up, warm-up, then image 0, image 1, image 0, image 1
    events = [run(100 * r) for r in range(6)]
    events += [node("conv", 100 * r + 5, d) for r, d in enumerate(durations)]
    events += [node("relu", 100 * r + 6, 1) for r in range(6)] + [node("relu", 100 * 5 + 7, 1)]
    times = _node_times(events, images=2, repeats=2)
    assert times["conv"] == pytest.approx(((10 + 14) / 2 + (30 + 50) / 2) / 2)
    assert times["relu"] == pytest.approx((1 + 1.5) / 2)


def test_peak_rss_is_the_measuring_processs_own_not_its_parents(tmp_path):
    """The child that runs the model reports its own high-water mark: a child forked from this process
    while it holds 1.5 GB would otherwise report at least that (Linux hands ru_maxrss down)."""
    path = tmp_path / "tiny.onnx"
    onnx.save_model(tiny_classifier(), path)
    held = np.ones(3 << 28, np.uint8)  # 768 MiB touched, twice over: the copy below
    held_too = held.copy()
    images = np.zeros((1, 3, 16, 16), np.float32)
    assert _peak_rss_mb(str(path), tiny_classifier().graph.input[0].name, images, 1) < 700
    assert held.sum() + held_too.sum() > 0


@pytest.fixture
def classifier_path(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save_model(tiny_classifier(), path)
    return path


def test_bench_against_a_copy_of_the_library_prints_both_and_their_ratio(classifier_path, tmp_path, capsys,
                                                                          monkeypatch):
    copy, mapped_while_timing = library_copy_mapped_while_timing(tmp_path, monkeypatch, bench_model)
    assert main(["bench", str(classifier_path), "-k", "2", "--images", "2", "--repeats", "2", "--clock", "cpu",
                 "--against", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "1 thread(s)" in out and "2 thread(s)" not in out  # --clock cpu: one thread unless told
    assert "end to end by the calling thread's CPU time" in out
    header = next(line for line in out.splitlines() if line.startswith("layer "))
    assert header.split()[-3:] == ["against", "µs", "ratio"]
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("conv")}
    assert sorted(rows) == ["conv1", "conv2"] and all(float(row[-1]) > 0 for row in rows.values())
    end_to_end = re.search(r"rewritten ([\d.]+) ms.*; against ([\d.]+) ms, ratio ([\d.]+)", out)
    assert end_to_end and float(end_to_end[3]) > 0
    assert mapped_while_timing == [True]


def test_bench_times_the_rewrite_as_deployed_without_counters(classifier_path, capsys, monkeypatch):
    """The kernels skip counting where no one reads the counters: the timed rewrite exposes none (its
    outputs are the original's), and the MACs each layer executes still come from a copy that does."""
    timed_outputs = timed_session_outputs(monkeypatch, bench_model)
    assert main(["bench", str(classifier_path), "-k", "2", "--images", "2", "--repeats", "1", "--clock", "cpu"]) == 0
    ((original, rewritten),) = timed_outputs
    assert rewritten == original
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("conv")]
    assert [row[3] for row in rows] == ["100.0%", "100.0%"]  # MACs executed: the tiny convs compute every output


@pytest.fixture
def timed_activities(monkeypatch) -> list:
    """The channel activity each rewrite bench makes is given, the timed one's and the counting copy's
    (None: channels in their order)."""
    activities = []

    def rewrite_recording(model, **options):
        activities.append(options.get("channel_activity"))
        return rewrite_with_summary(model, **options)

    monkeypatch.setattr(bench_model, "rewrite_with_summary", rewrite_recording)
    return activities


def test_bench_with_ordered_channels_times_the_ordered_rewrite(classifier_path, capsys, timed_activities):
    assert main(["bench", str(classifier_path), "-k", "2", "--images", "2", "--repeats", "1", "--clock", "cpu",
                 "--order-channels"]) == 0
    activity, counting_activity = timed_activities
    assert counting_activity is activity and sorted(activity) == ["conv1", "conv2"] and all(len(a) == 8 for a in activity.values())
    out = capsys.readouterr().out
    assert "channels ordered by their activity on the images after the first 2 of the data" in out
    assert re.search(r"end to end: original [\d.]+ ms, rewritten [\d.]+ ms", out)


def test_bench_keeps_a_float_models_channel_order_unless_asked(classifier_path, capsys, timed_activities):
    assert main(["bench", str(classifier_path), "-k", "2", "--images", "2", "--repeats", "1", "--clock", "cpu"]) == 0
    assert timed_activities == [None, None]
    assert "channels ordered" not in capsys.readouterr().out


@pytest.mark.parametrize("arguments, code, message", [
    (["--clock", "cpu", "--threads", "2"], EXIT_USAGE, "--clock cpu needs --threads 1"),
    (["--threads", "one"], EXIT_USAGE, "--threads expects integers"),
    (["--against", "missing.so"], EXIT_INPUT, "--against missing.so: no such file"),
])
def test_bench_refuses_bad_comparison_options(classifier_path, capsys, arguments, code, message):
    assert main(["bench", str(classifier_path), *arguments]) == code
    assert message in capsys.readouterr().err
