"""The C++ PredictiveConv op against the NumPy reference and onnxruntime's own Conv."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import onnxpred
from onnxpred import op, reference
from op_models import assert_counters_match, assert_matches_reference, assert_same_at_one_and_two_threads, run_op, single_node_model


@st.composite
def conv_cases(draw):
    """A PredictiveConv call with small integer-valued tensors, so every summation order is exact."""
    depthwise = draw(st.booleans())
    group = draw(st.integers(1, 4)) if depthwise else draw(st.integers(1, 3))
    in_per_group = 1 if depthwise else draw(st.integers(1, 4))
    out_per_group = draw(st.integers(1, 3))
    kernel_h, kernel_w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilations = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    extent_h = dilations[0] * (kernel_h - 1) + 1
    extent_w = dilations[1] * (kernel_w - 1) + 1
    height = draw(st.integers(max(1, extent_h - pads[0] - pads[2]), 13))
    width = draw(st.integers(max(1, extent_w - pads[1] - pads[3]), 13))
    batch = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    c, m = group * in_per_group, group * out_per_group
    x = rng.integers(-2, 3, (batch, c, height, width)).astype(np.float32)
    w = rng.integers(-2, 3, (m, in_per_group, kernel_h, kernel_w)).astype(np.float32)
    b = rng.integers(-3, 3, m).astype(np.float32) if draw(st.booleans()) else None
    out_h = (height + pads[0] + pads[2] - extent_h) // strides[0] + 1
    out_w = (width + pads[1] + pads[3] - extent_w) // strides[1] + 1
    z = rng.integers(-3, 3, (batch, m, out_h, out_w)).astype(np.float32) if draw(st.booleans()) else None
    activation = draw(st.sampled_from(["Relu", "Clip"]))
    attributes = dict(
        strides=strides,
        pads=pads,
        dilations=dilations,
        group=group,
        window=draw(st.integers(1, 8)),
        pattern=draw(st.sampled_from(op.PATTERNS)),
        margin=float(draw(st.integers(0, 2))),
        activation=activation,
        clip_max=float(draw(st.integers(1, 6))) if activation == "Clip" else math.inf,
        audit=draw(st.booleans()),
    )
    return x, w, b, z, attributes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(conv_cases())
def test_integer_tensors_match_reference_exactly(kernel_path, case):
    x, w, b, z, attributes = case
    assert_matches_reference(x, w, b, z, **attributes)


@pytest.mark.parametrize("window", [2, 3, 5])
@pytest.mark.parametrize("audit", [False, True])
def test_counters_on_a_layer_with_many_zero_windows(kernel_path, window, audit):
    rng = np.random.default_rng(window)
    x = np.maximum(rng.integers(-3, 3, (2, 8, 17, 15)), 0).astype(np.float32)
    w = rng.integers(-2, 2, (12, 8, 3, 3)).astype(np.float32)
    b = np.full(12, -6, np.float32)
    stats = assert_matches_reference(x, w, b, pads=(1, 1, 1, 1), window=window, audit=audit)
    assert stats["predicted"] > 0 and stats["zero_diag"] > 0  # the case exercises prediction
    if audit:
        assert stats["pred_hit"] + stats["pred_miss"] == stats["predicted"]
    else:
        assert stats["pred_hit"] == stats["pred_miss"] == -1


@pytest.mark.parametrize("window, pattern", [(2, "diagonal"), (2, "anti_diagonal"), (2, "checkerboard"),
                                             (3, "diagonal"), (3, "centre"), (4, "corners")])
def test_gathered_rest_outputs_match_reference_exactly(kernel_path, window, pattern):
    """16 input channels make every instruction set gather the rest outputs of the active pairs; at k = 2 a
    run of windows shares its tiles, with the windows clipped at the right and bottom edges."""
    rng = np.random.default_rng(window)
    x = np.maximum(rng.integers(-2, 3, (2, 16, 13, 11)), 0).astype(np.float32)
    w = rng.integers(-1, 2, (20, 16, 3, 3)).astype(np.float32)
    b = rng.integers(-12, -5, 20).astype(np.float32)
    z = rng.integers(-2, 2, (2, 20, 13, 11)).astype(np.float32)
    attributes = dict(pads=(1, 1, 1, 1), window=window, pattern=pattern, audit=True)
    stats = assert_matches_reference(x, w, b, z, **attributes)
    # Some pairs are predicted, others active past their samples.
    mask = reference.sampling_pattern(pattern, window)
    samples = np.tile(mask, (13 // window + 1, 11 // window + 1))[:13, :11].sum() * 2 * 20
    assert stats["predicted"] > 0 and stats["macs_executed"] > samples * 16 * 9


def test_random_floats_match_reference_away_from_zero(kernel_path):
    """Float data: compare with a tolerance, on a case where no sampled value is near 0."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 16, 20, 18)).astype(np.float32)
    w = rng.standard_normal((24, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    attributes = dict(pads=(1, 0, 2, 1), strides=(1, 2), group=2, window=3, audit=True)
    pre_activation = reference.conv2d(x, w, b, reference.ConvAttributes((1, 2), (1, 0, 2, 1), (1, 1), 2))
    assert np.abs(pre_activation).min() > 1e-4, "pick another seed: a value is too close to zero"
    y, counters = run_op(x, w, b, **attributes)
    expected_y, expected_counters = reference.predictive_conv(x, w, b, **attributes)
    np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)
    assert_counters_match(counters, expected_counters)


def conv_activation_model(w, b, activation, clip_max, attributes):
    """onnxruntime's own Conv followed by Relu or Clip(0, clip_max)."""
    initializers = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    nodes = [helper.make_node("Conv", ["X", "W", "B"], ["C"], kernel_shape=list(w.shape[2:]), **attributes)]
    if activation == "Relu":
        nodes.append(helper.make_node("Relu", ["C"], ["Y"]))
    else:
        initializers += [numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(clip_max), "hi")]
        nodes.append(helper.make_node("Clip", ["C", "lo", "hi"], ["Y"]))
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "shape, attributes",
    [
        ((1, 16, 28, 28, 32, 3), dict(pads=[1, 1, 1, 1])),
        ((2, 3, 31, 29, 8, 5), dict(pads=[2, 1, 2, 0], strides=[2, 2])),
        ((1, 24, 15, 15, 24, 3), dict(pads=[1, 1, 1, 1], group=24)),
        ((1, 12, 13, 17, 18, 3), dict(pads=[0, 2, 1, 1], dilations=[2, 1], group=3)),
        ((1, 96, 14, 14, 40, 1), dict()),
    ],
    ids=["3x3", "5x5-stride2", "depthwise", "dilated-grouped", "1x1"],
)
@pytest.mark.parametrize("activation, clip_max", [("Relu", math.inf), ("Clip", 6.0)])
def test_window_one_equals_onnxruntime_conv(kernel_path, shape, attributes, activation, clip_max):
    n, c, h, w_, m, k = shape
    group = attributes.get("group", 1)
    rng = np.random.default_rng(c * h + m)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32) * 3
    w = rng.standard_normal((m, c // group, k, k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    expected = onnxpred.session(conv_activation_model(w, b, activation, clip_max, attributes)).run(None, {"X": x})[0]
    y, counters = run_op(x, w, b, window=1, activation=activation, clip_max=clip_max, **attributes)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert counters[2] == 0 and counters[5] == counters[6]  # nothing predicted, every MAC executed


@pytest.mark.parametrize("window", [1, 3])
def test_results_do_not_depend_on_thread_count(kernel_path, window):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 32, 30, 30)).astype(np.float32)
    w = rng.standard_normal((48, 32, 3, 3)).astype(np.float32)
    b = (rng.standard_normal(48) - 1).astype(np.float32)
    assert_same_at_one_and_two_threads(x, w, b, pads=(1, 1, 1, 1), window=window, audit=True)


def test_weights_given_as_a_graph_input(kernel_path):
    """W need not be constant: the kernel then packs it on every call."""
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, (1, 4, 9, 9)).astype(np.float32)
    w = rng.integers(-2, 3, (6, 4, 3, 3)).astype(np.float32)
    assert_matches_reference(x, w, weights_as_input=True, window=2)


def test_sparse_layer_executes_exactly_the_non_predicted_outputs(kernel_path):
    """Where most windows are predicted, no path falls back to dense work: macs_executed is exact."""
    rng = np.random.default_rng(21)
    x = np.maximum(rng.integers(-3, 3, (1, 64, 18, 18)), 0).astype(np.float32)
    w = rng.integers(-1, 2, (64, 64, 3, 3)).astype(np.float32)
    b = rng.integers(-40, 0, 64).astype(np.float32)
    y, counters = run_op(x, w, b, pads=(1, 1, 1, 1), window=3, audit=True)
    expected_y, expected_counters = reference.predictive_conv(x, w, b, pads=(1, 1, 1, 1), window=3, audit=True)
    predicted_share = expected_counters[2] / expected_counters[0]
    assert 0.2 < predicted_share < 0.8, predicted_share
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_array_equal(counters, expected_counters)


def test_unknown_kernel_path_is_refused(monkeypatch):
    monkeypatch.setenv("ONNXPRED_KERNEL", "avx9000")
    with pytest.raises(Exception, match="ONNXPRED_KERNEL must be auto, avx512, avx2, portable or scalar"):
        onnxpred.session(single_node_model(np.ones((2, 1, 3, 3), np.float32)))


@pytest.mark.parametrize(
    "shape, attributes",
    [
        ((1, 3, 20, 48, 8, 3), dict(pads=[1, 1, 1, 1])),
        ((2, 24, 13, 11, 40, 3), dict(pads=[1, 1, 1, 1])),
        ((1, 40, 9, 32, 20, 1), dict()),
        ((1, 24, 15, 15, 24, 3), dict(pads=[1, 1, 1, 1], group=24)),
    ],
    ids=["direct", "tiled", "pointwise", "depthwise"],
)
@pytest.mark.parametrize("window, pattern", [(1, "diagonal"), (2, "both_diagonals"), (3, "diagonal")])
def test_outputs_do_not_depend_on_reading_the_counters(kernel_path, shape, attributes, window, pattern):
    """A deployed model reads no counters, and where nothing is predicted the paths then record no
    triggers: Y is the reference's either way, and still predicted where windows are."""
    n, c, h, w_, m, k = shape
    rng = np.random.default_rng(c + m + window)
    x = rng.integers(-2, 3, (n, c, h, w_)).astype(np.float32)
    w = rng.integers(-1, 2, (m, c // attributes.get("group", 1), k, k)).astype(np.float32)
    b = rng.integers(-4, 2, m).astype(np.float32)
    expected, expected_counters = reference.predictive_conv(x, w, b, window=window, pattern=pattern, **attributes)
    assert (expected_counters[2] > 0) == (window == 3)
    y, counters = run_op(x, w, b, window=window, pattern=pattern, **attributes)
    model = single_node_model(w, b, with_counters=False, window=window, pattern=pattern, **attributes)
    (y_uncounted,) = onnxpred.session(model).run(None, {"X": x})
    np.testing.assert_array_equal(y, expected)
    assert_counters_match(counters, expected_counters)
    np.testing.assert_array_equal(y_uncounted, expected)


def test_counters_output_is_optional():
    w = np.ones((2, 1, 3, 3), np.float32)
    x = np.ones((1, 1, 5, 5), np.float32)
    model = single_node_model(w, with_counters=False)
    (y,) = onnxpred.session(model).run(None, {"X": x})
    np.testing.assert_array_equal(y, reference.predictive_conv(x, w)[0])


@pytest.mark.parametrize("audit", [False, True])
@pytest.mark.parametrize("window", [1, 2, 3, 5])
@pytest.mark.parametrize(
    "height, width",
    [(7, 7), (14, 14), (5, 1101)],  # small planes, and a long row that ends inside a vector and a window
    ids=["7x7", "14x14", "wide"],
)
def test_pointwise_layers_match_reference_exactly(kernel_path, window, height, width, audit):
    """1x1 stride-1 unpadded convs take the GEMM path: every output computed, then the window rule."""
    rng = np.random.default_rng(window * height + width)
    x = np.maximum(rng.integers(-2, 3, (2, 24, height, width)), 0).astype(np.float32)
    w = rng.integers(-2, 3, (40, 24, 1, 1)).astype(np.float32)
    b = rng.integers(-6, 2, 40).astype(np.float32)
    z = rng.integers(-2, 2, (2, 40, height, width)).astype(np.float32)
    for residual in (None, z):
        y, counters = run_op(x, w, b, residual, window=window, audit=audit, activation="Clip", clip_max=6.0)
        expected_y, expected_counters = reference.predictive_conv(x, w, b, residual, window=window, audit=audit,
                                                                  activation="Clip", clip_max=6.0)
        np.testing.assert_array_equal(y, expected_y)
        assert_counters_match(counters, expected_counters)
        if window > 1:
            assert expected_counters[2] > 0  # the case exercises prediction


@pytest.mark.parametrize("window", [1, 3])
def test_one_session_serves_every_plane_size_of_a_1x1_conv(kernel_path, window):
    """A 1x1 conv takes the pointwise path on large planes and the tiled one on small planes (whose
    last vector would be mostly empty). Its constant weights are packed at session creation, before
    any input size is known, so one session must serve both."""
    rng = np.random.default_rng(window)
    w = rng.integers(-2, 3, (12, 5, 1, 1)).astype(np.float32)
    b = rng.integers(-3, 2, 12).astype(np.float32)
    session = onnxpred.session(single_node_model(w, b, window=window))
    for height, width in [(1, 1), (2, 3), (7, 7), (16, 16), (3, 40)]:
        x = rng.integers(-2, 3, (1, 5, height, width)).astype(np.float32)
        y, counters = session.run(None, {"X": x})
        expected_y, expected_counters = reference.predictive_conv(x, w, b, window=window)
        np.testing.assert_array_equal(y, expected_y)
        assert_counters_match(counters, expected_counters)
