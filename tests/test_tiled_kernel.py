"""The tiled path's special cases against the NumPy reference, on every instruction set: a reduction too
short to gather (computed in one dense pass, the predicted outputs zeroed after it) and gather tiles
whose horizontal sums are reduced a vector of accumulators at a time."""

from __future__ import annotations

import numpy as np
import pytest

import onnxpred
from onnxpred import reference
from op_models import assert_counters_match, assert_same_at_one_and_two_threads, run_op


def _integer_layer(seed, channels, out_channels, height, width, kernel=3):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.integers(-2, 3, (2, channels, height, width)), 0).astype(np.float32)
    w = rng.integers(-1, 2, (out_channels, channels, kernel, kernel)).astype(np.float32)
    b = rng.integers(-6, 1, out_channels).astype(np.float32)
    z = rng.integers(-2, 2, (2, out_channels, height, width)).astype(np.float32)
    return x, w, b, z


@pytest.mark.parametrize("window, pattern", [(2, "diagonal"), (3, "checkerboard"), (4, "corners"), (5, "centre")])
def test_short_reduction_computes_every_output_then_zeroes_the_predicted(kernel_path, window, pattern):
    """2 input channels (a kernel row of 6 floats, shorter than two vectors of every instruction set,
    like a 3-channel stem's on AVX2 and AVX-512) at a size whose windows are clipped at both edges: Y
    and the counters equal the reference's, and every MAC is executed (nothing was gathered)."""
    x, w, b, z = _integer_layer(window, 2, 40, 23, 19)
    attributes = dict(pads=(1, 1, 1, 1), window=window, pattern=pattern, audit=True)
    y, counters = run_op(x, w, b, z, **attributes)
    expected_y, expected_counters = reference.predictive_conv(x, w, b, z, **attributes)
    np.testing.assert_array_equal(y, expected_y)
    assert_counters_match(counters, expected_counters)
    stats = dict(zip(onnxpred.COUNTER_NAMES, counters.tolist()))
    assert stats["predicted"] > 0 and stats["pred_miss"] > 0
    if kernel_path != "scalar":  # the per-plane path skips the predicted outputs
        assert stats["macs_executed"] == stats["macs_dense"]
    assert_same_at_one_and_two_threads(x, w, b, pads=(1, 1, 1, 1), window=window, pattern=pattern)


@pytest.mark.parametrize("window", [2, 3])
@pytest.mark.parametrize("activation", [{}, {"activation": "Clip", "clip_max": 2.0}], ids=["Relu", "Clip"])
def test_gather_tiles_of_every_size_match_reference(kernel_path, window, activation):
    """40 input channels gather on every instruction set; 70 output channels make one chunk of three
    dense blocks, the last one short, whose subsets of active windows fill gather tiles of every size,
    each finishing its outputs (bias, residual, activation) itself."""
    x, w, b, z = _integer_layer(10 + window, 40, 70, 17, 22)
    attributes = dict(pads=(1, 1, 1, 1), window=window, audit=True, **activation)
    y, counters = run_op(x, w, b, z, **attributes)
    expected_y, expected_counters = reference.predictive_conv(x, w, b, z, **attributes)
    np.testing.assert_array_equal(y, expected_y)
    assert_counters_match(counters, expected_counters)
    stats = dict(zip(onnxpred.COUNTER_NAMES, counters.tolist()))
    assert 0 < stats["predicted"] < stats["outputs"] // 2
