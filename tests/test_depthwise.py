"""The depthwise path of PredictiveConv (one input channel per group) against the reference and onnxruntime.

The vector paths compute a block of channels (4, 8 or 16 by instruction set) for a window whenever any
channel of the block is active there, and count those MACs; the scalar path computes exactly the
non-predicted outputs. `expected_macs` models both, so macs_executed is checked exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxpred
from onnxpred import reference
from op_models import assert_matches_reference, assert_same_at_one_and_two_threads, run_op

BLOCK_LANES = {"scalar": 1, "portable": 4, "avx2": 8, "avx512": 16}


def expected_macs(x, w, b, z, lanes, attributes):
    """macs_executed of a path that computes a window's other outputs for a whole block of `lanes`
    lane channels when any of them is active there (lane c·multiplier + j of block j, c // lanes)."""
    attrs = reference.ConvAttributes(attributes.get("strides", (1, 1)), attributes.get("pads", (0, 0, 0, 0)),
                                     attributes.get("dilations", (1, 1)), attributes["group"])
    v = reference.conv2d(x, w, b, attrs)
    if z is not None:
        v = v + z
    p = v.astype(np.float32)
    a = reference.activate(p, attributes.get("activation", "Relu"), attributes.get("clip_max", math.inf))
    k = attributes["window"]
    pattern = reference.sampling_pattern(attributes.get("pattern", "diagonal"), k)
    _, sample, triggered = reference.predict(p, a, pattern, attributes.get("margin", 0.0))
    active = ~triggered
    n, m, height, width = a.shape
    channels, multiplier = x.shape[1], m // x.shape[1]
    window_active = active[:, :, ::k, ::k]  # a window's activity, read at its first pixel
    # Output channel c·multiplier + j -> block (j, c // lanes).
    per_lane = window_active.reshape(n, channels, multiplier, *window_active.shape[2:])
    blocks = -(-channels // lanes)
    padded = np.zeros((n, blocks * lanes, multiplier, *window_active.shape[2:]), bool)
    padded[:, :channels] = per_lane
    block_active = padded.reshape(n, blocks, lanes, multiplier, *window_active.shape[2:]).any(axis=2)
    block_active = np.repeat(block_active, lanes, axis=1)[:, :channels].reshape(window_active.shape)
    computed_rest = np.repeat(np.repeat(block_active, k, axis=2), k, axis=3)[:, :, :height, :width] & ~sample
    computed = int(sample.sum() + computed_rest.sum())
    return computed * w.shape[2] * w.shape[3]


def assert_exact(kernel_path, x, w, b=None, z=None, *, weights_as_input=False, **attributes):
    stats = assert_matches_reference(x, w, b, z, weights_as_input=weights_as_input, **attributes)
    assert stats["macs_executed"] == expected_macs(x, w, b, z, BLOCK_LANES[kernel_path], attributes)
    return np.array([stats[name] for name in onnxpred.COUNTER_NAMES], np.int64)


def integer_case(rng, batch, channels, size, kernel, multiplier=1, stride=1, pads=None, with_z=False):
    """Integer-valued tensors (exact in every summation order); biases spread so that some
    windows are all zero and others are not."""
    pads = pads if pads is not None else (kernel // 2,) * 4
    x = rng.integers(-3, 4, (batch, channels, size, size)).astype(np.float32)
    w = rng.integers(-2, 3, (channels * multiplier, 1, kernel, kernel)).astype(np.float32)
    b = rng.integers(-12, 4, channels * multiplier).astype(np.float32)
    out = (size + pads[0] + pads[2] - kernel) // stride + 1, (size + pads[1] + pads[3] - kernel) // stride + 1
    z = rng.integers(-3, 4, (batch, channels * multiplier, *out)).astype(np.float32) if with_z else None
    attributes = dict(group=channels, strides=(stride, stride), pads=pads, activation="Clip", clip_max=6.0)
    return x, w, b, z, attributes


# EfficientNet-Lite-like depthwise layers, scaled down: TF "SAME" padding puts the extra pad of a
# stride-2 layer at the bottom/right.
LAYERS = [
    pytest.param(dict(channels=32, size=16, kernel=3, stride=1), id="32ch-3x3-s1"),
    pytest.param(dict(channels=24, size=17, kernel=3, stride=2, pads=(0, 0, 1, 1)), id="24ch-3x3-s2-same"),
    pytest.param(dict(channels=40, size=12, kernel=5, stride=1), id="40ch-5x5-s1"),
    pytest.param(dict(channels=20, size=14, kernel=5, stride=2, pads=(1, 1, 2, 2)), id="20ch-5x5-s2-same"),
    pytest.param(dict(channels=19, size=7, kernel=3, stride=1), id="19ch-partial-block"),
    pytest.param(dict(channels=5, size=9, kernel=3, stride=1, multiplier=3), id="multiplier-3"),
]


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("window", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("audit", [False, True])
def test_integer_layers_match_reference_exactly(kernel_path, layer, window, audit):
    rng = np.random.default_rng(layer["channels"] * 100 + window)
    x, w, b, _, attributes = integer_case(rng, batch=2, **layer)
    counters = assert_exact(kernel_path, x, w, b, window=window, audit=audit, **attributes)
    stats = dict(zip(onnxpred.COUNTER_NAMES, counters.tolist()))
    assert stats["zero_diag"] > 0  # the data exercises zero samples
    if window > 1:
        assert stats["predicted"] > 0


@pytest.mark.parametrize("window", [1, 3])
def test_residual_and_asymmetric_pads(kernel_path, window):
    rng = np.random.default_rng(11)
    x, w, b, z, attributes = integer_case(rng, batch=2, channels=18, size=11, kernel=3, pads=(2, 0, 1, 3),
                                          with_z=True)
    assert_exact(kernel_path, x, w, b, z, window=window, audit=True, **attributes)


def test_dilation_and_relu(kernel_path):
    rng = np.random.default_rng(12)
    x, w, b, _, attributes = integer_case(rng, batch=1, channels=17, size=13, kernel=3)
    attributes.update(dilations=(2, 1), activation="Relu", clip_max=math.inf)
    assert_exact(kernel_path, x, w, b, window=3, **attributes)


def test_inactive_blocks_skip_their_macs(kernel_path):
    """Channels 0..15 never fire; the others fire everywhere: whole blocks are skipped on every path."""
    rng = np.random.default_rng(13)
    x = rng.integers(0, 3, (1, 48, 12, 12)).astype(np.float32)
    w = rng.integers(0, 3, (48, 1, 3, 3)).astype(np.float32)
    b = np.where(np.arange(48) < 16, -1000, 1).astype(np.float32)
    attributes = dict(group=48, pads=(1, 1, 1, 1), window=3, audit=True)
    counters = assert_exact(kernel_path, x, w, b, **attributes)
    assert counters[6] < counters[5]


def test_one_active_channel_makes_its_block_compute(kernel_path):
    """Honest counting: a window computed for one active channel counts the whole block's MACs."""
    x = np.zeros((1, 16, 6, 6), np.float32)
    w = np.ones((16, 1, 3, 3), np.float32)
    b = np.full(16, -1, np.float32)
    b[3] = 1  # channel 3 is active in every window
    assert_exact(kernel_path, x, w, b, group=16, pads=(1, 1, 1, 1), window=3)


def test_nan_on_a_sample_counts_as_non_zero(kernel_path):
    x = -np.ones((1, 4, 6, 6), np.float32)
    x[0, 2, 4, 4] = np.nan
    w = np.ones((4, 1, 1, 1), np.float32)
    counters = assert_exact(kernel_path, x, w, group=4, window=3, audit=True)
    assert counters[2] == 4 * 4 * 6 - 6  # every window predicted but the one with the NaN sample


def test_empty_map_gives_outputs_from_padding_only(kernel_path):
    x = np.zeros((1, 3, 0, 5), np.float32)
    w = np.ones((3, 1, 3, 3), np.float32)
    b = np.array([1, -1, 0], np.float32)
    assert_exact(kernel_path, x, w, b, group=3, pads=(2, 1, 2, 1), window=2)


def test_weights_given_as_a_graph_input(kernel_path):
    """W need not be constant: the kernel then packs it on every call."""
    rng = np.random.default_rng(14)
    x, w, b, _, attributes = integer_case(rng, batch=1, channels=20, size=9, kernel=3)
    assert_exact(kernel_path, x, w, b, weights_as_input=True, window=3, **attributes)


@pytest.mark.parametrize("window", [1, 3])
def test_results_do_not_depend_on_thread_count(kernel_path, window):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 96, 28, 28)).astype(np.float32)
    w = rng.standard_normal((96, 1, 3, 3)).astype(np.float32)
    b = (rng.standard_normal(96) - 1).astype(np.float32)
    assert_same_at_one_and_two_threads(x, w, b, group=96, pads=(1, 1, 1, 1), window=window, audit=True,
                                       activation="Clip", clip_max=6.0)


def conv_clip_model(w, b, attributes):
    """onnxruntime's own Conv(group = C) followed by Clip(0, 6)."""
    initializers = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"),
                    numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")]
    nodes = [helper.make_node("Conv", ["X", "W", "B"], ["C"], kernel_shape=list(w.shape[2:]), **attributes),
             helper.make_node("Clip", ["C", "lo", "hi"], ["Y"])]
    graph = helper.make_graph(nodes, "depthwise", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "channels, size, kernel, stride, pads",
    [(96, 56, 3, 2, (0, 0, 1, 1)), (144, 28, 3, 1, (1, 1, 1, 1)), (240, 14, 5, 1, (2, 2, 2, 2)),
     (200, 7, 5, 1, (2, 2, 2, 2))],
    ids=["96ch-s2", "144ch", "240ch-5x5", "200ch-7x7map"],
)
def test_window_one_equals_onnxruntime_depthwise_conv(kernel_path, channels, size, kernel, stride, pads):
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((2, channels, size, size)).astype(np.float32) * 3
    w = rng.standard_normal((channels, 1, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32)
    attributes = dict(group=channels, strides=[stride, stride], pads=list(pads))
    expected = onnxpred.session(conv_clip_model(w, b, attributes)).run(None, {"X": x})[0]
    y, counters = run_op(x, w, b, window=1, activation="Clip", clip_max=6.0, **attributes)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert counters[2] == 0 and counters[5] == counters[6]
