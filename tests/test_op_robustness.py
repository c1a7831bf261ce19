"""PredictiveConv under hostile models and inputs: an onnxruntime error or a correct result, never a crash."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import helper

import onnxpred
from onnxpred import op, reference
from op_models import assert_counters_match, single_node_model


def run(model, x, z=None):
    feeds = {"X": x} if z is None else {"X": x, "Z": z}
    return onnxpred.session(model).run(None, feeds)


def assert_matches_reference(x, w, b=None, z=None, **attributes):
    y, counters = run(single_node_model(w, b, with_z=z is not None, **attributes), x, z)
    expected_y, expected_counters = reference.predictive_conv(x, w, b, z, **attributes)
    np.testing.assert_array_equal(y, expected_y)  # NaN positions must agree too
    assert_counters_match(counters, expected_counters)
    return counters


def test_nan_and_inf_propagate_as_in_conv(kernel_path):
    x = np.ones((1, 3, 6, 6), np.float32)
    x[0, 0, 2, 2] = np.nan
    x[0, 1, 0, 0] = np.inf
    x[0, 2, 5, 5] = -np.inf
    assert_matches_reference(x, np.ones((2, 3, 3, 3), np.float32), pads=(1, 1, 1, 1), audit=True)


def test_nan_on_a_sample_counts_as_non_zero(kernel_path):
    """An all-negative map predicts every window zero, except the one whose sample is NaN."""
    x = -np.ones((1, 1, 6, 6), np.float32)
    x[0, 0, 4, 4] = np.nan
    w = np.zeros((1, 1, 1, 1), np.float32)
    w[0, 0, 0, 0] = 1
    counters = assert_matches_reference(x, w, window=3, audit=True)
    stats = dict(zip(onnxpred.COUNTER_NAMES, counters.tolist()))
    assert stats["predicted"] == 6 * 3  # 3 of 4 windows, 6 non-samples each
    assert stats["zero_diag"] == 3 * 3


@pytest.mark.parametrize(
    "x_shape, w_shape, pads",
    [
        ((0, 3, 5, 5), (2, 3, 3, 3), (0, 0, 0, 0)),  # empty batch
        ((1, 3, 5, 5), (0, 3, 3, 3), (0, 0, 0, 0)),  # no output channels
        ((1, 0, 5, 5), (2, 0, 3, 3), (0, 0, 0, 0)),  # no input channels: Y = act(B)
        ((1, 3, 0, 5), (2, 3, 3, 3), (2, 1, 2, 1)),  # empty map, outputs from padding only
    ],
    ids=["N=0", "M=0", "C=0", "H=0"],
)
def test_empty_tensors(kernel_path, x_shape, w_shape, pads):
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, x_shape).astype(np.float32)
    w = rng.integers(-2, 3, w_shape).astype(np.float32)
    b = rng.integers(-2, 3, w_shape[0]).astype(np.float32)
    assert_matches_reference(x, w, b, pads=pads)


@pytest.mark.parametrize(
    "pads, message",
    [
        ((2**62, 2**62, 2**62, 1), "overflow a 64-bit integer"),
        ((10**8, 10**8, 10**8, 10**8), "allocate"),
    ],
    ids=["sizes-overflow", "allocation-too-large"],
)
def test_huge_shapes_fail_cleanly(pads, message):
    model = single_node_model(np.ones((2, 3, 3, 3), np.float32), pads=pads)
    with pytest.raises(Exception, match=message):
        run(model, np.ones((1, 3, 6, 6), np.float32))


def test_one_session_shared_by_eight_threads_gives_serial_results():
    rng = np.random.default_rng(11)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    b = (rng.standard_normal(16) - 0.5).astype(np.float32)
    sess = onnxpred.session(single_node_model(w, b, pads=(1, 1, 1, 1), window=3, audit=True), intra_op_num_threads=2)
    inputs = [rng.standard_normal((2, 8, 24, 24)).astype(np.float32) for _ in range(8)]
    serial = [sess.run(None, {"X": x}) for x in inputs]
    concurrent = [None] * len(inputs)
    barrier = threading.Barrier(len(inputs))

    def worker(i):
        barrier.wait()
        for _ in range(5):
            concurrent[i] = sess.run(None, {"X": inputs[i]})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, expected in zip(concurrent, serial):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


# --- Fuzzing: random single-node models, valid and invalid. ---

small_ints = st.integers(-2, 5)


@st.composite
def hostile_cases(draw):
    rank_x = draw(st.sampled_from([4, 4, 4, 3, 5]))
    x_shape = [draw(st.integers(0, 2)), draw(st.integers(0, 5))] + [draw(st.integers(0, 9)) for _ in range(rank_x - 2)]
    w_shape = [draw(st.integers(0, 4)), draw(st.integers(0, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    attributes = {}
    for name, count in (("strides", 2), ("dilations", 2), ("pads", 4), ("kernel_shape", 2)):
        if draw(st.booleans()):
            attributes[name] = draw(st.lists(small_ints, min_size=count - 1, max_size=count + 1))
    attributes["group"] = draw(st.integers(-1, 4))
    attributes["window"] = draw(st.integers(-1, 9))
    attributes["pattern"] = draw(st.sampled_from(op.PATTERNS + ("spiral",)))
    attributes["margin"] = draw(st.sampled_from([0.0, 1.0, 2.0, -1.0, math.inf]))
    attributes["activation"] = draw(st.sampled_from(["Relu", "Clip", "Tanh"]))
    attributes["clip_max"] = draw(st.sampled_from([math.inf, 6.0, 0.0, -1.0]))
    attributes["audit"] = draw(st.integers(0, 2))
    with_bias = draw(st.booleans())
    bias_length = draw(st.sampled_from([w_shape[0], w_shape[0] + 1]))
    seed = draw(st.integers(0, 2**32 - 1))
    return x_shape, w_shape, attributes, with_bias, bias_length, seed


def model_from_attributes(w, b, attributes):
    model = single_node_model(w, b, kernel_shape=list(w.shape[2:]))
    node = model.graph.node[0]
    del node.attribute[:]
    for name, value in attributes.items():
        if name == "clip_max" and math.isinf(value):
            continue
        node.attribute.append(helper.make_attribute(name, value))
    return model


def valid_call(x_shape, w_shape, attributes, with_bias, bias_length):
    """Mirrors the op's documented validity rules; when it says yes, the op must match the reference."""
    strides = attributes.get("strides", [1, 1])
    dilations = attributes.get("dilations", [1, 1])
    pads = attributes.get("pads", [0, 0, 0, 0])
    kernel = attributes.get("kernel_shape", w_shape[2:])
    group, window = attributes["group"], attributes["window"]
    if len(x_shape) != 4 or len(strides) != 2 or len(dilations) != 2 or len(pads) != 4 or len(kernel) != 2:
        return False
    if min(strides) < 1 or min(dilations) < 1 or min(pads) < 0 or list(kernel) != w_shape[2:]:
        return False
    if group < 1 or window < 1 or attributes["audit"] not in (0, 1):
        return False
    if attributes["pattern"] not in op.PATTERNS or not 0 <= attributes["margin"] < math.inf:
        return False
    activation, clip_max = attributes["activation"], attributes["clip_max"]
    if activation == "Tanh" or clip_max <= 0 or (activation == "Relu" and math.isfinite(clip_max)):
        return False
    if w_shape[1] * group != x_shape[1] or w_shape[0] % group or (with_bias and bias_length != w_shape[0]):
        return False
    for size, pad_sum, dilation, k in zip(x_shape[2:], (pads[0] + pads[2], pads[1] + pads[3]), dilations, w_shape[2:]):
        if size + pad_sum < dilation * (k - 1) + 1:
            return False
    return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(hostile_cases())
def test_fuzzed_models_fail_cleanly_or_match_the_reference(kernel_path, case):
    x_shape, w_shape, attributes, with_bias, bias_length, seed = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, x_shape).astype(np.float32)
    w = rng.integers(-2, 3, w_shape).astype(np.float32)
    b = rng.integers(-2, 3, bias_length).astype(np.float32) if with_bias else None
    model = model_from_attributes(w, b, attributes)
    valid = valid_call(x_shape, w_shape, attributes, with_bias, bias_length)
    event("valid call" if valid else "invalid call")
    try:
        y, counters = run(model, x)
    except Exception as error:  # onnxruntime's error types; a crash would end the process instead
        assert not valid, f"a valid call failed: {error}"
        assert "PredictiveConv node 'pconv'" in str(error)
        return
    assert valid, "an invalid call succeeded"
    call = {k: v for k, v in attributes.items() if k != "kernel_shape"}
    call["audit"] = bool(call["audit"])
    expected_y, expected_counters = reference.predictive_conv(x, w, b, **call)
    np.testing.assert_array_equal(y, expected_y)
    assert_counters_match(counters, expected_counters)
