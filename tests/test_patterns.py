"""Sampling patterns and the confidence margin in every kernel path, exactly against the reference.

Integer-valued tensors and integer margins, so that every summation order gives the same P and the
trigger (P <= -margin at every sample) is decided the same way by every path (docs/predictive_conv.md,
"Testing note"). Plane sizes are not multiples of the windows: clipped windows, some of them without
any sample inside the plane.
"""

from __future__ import annotations

import numpy as np
import pytest
import onnxpred
from onnxpred import op, reference
from op_models import assert_counters_match, assert_matches_reference, single_node_model

WINDOWS = (1, 2, 3, 4)
MARGINS = (0.0, 1.0, 2.0)


def _output_shape(x, w, attributes):
    conv = reference.ConvAttributes(attributes.get("strides", (1, 1)), attributes.get("pads", (0, 0, 0, 0)),
                                    (1, 1), attributes.get("group", 1))
    return reference.conv2d(x, w, None, conv).shape


def _layer(seed, x_shape, w_shape, *, with_z=False, **attributes):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, x_shape).astype(np.float32)
    w = rng.integers(-1, 2, w_shape).astype(np.float32)
    b = rng.integers(-3, 1, w_shape[0]).astype(np.float32)
    z = rng.integers(-2, 2, _output_shape(x, w, attributes)).astype(np.float32) if with_z else None
    return x, w, b, z, attributes


# One layer per conv path the kernels take (with the SIMD kernels; ONNXPRED_KERNEL=scalar runs
# them all per plane). Output planes are 11x13, 10x16, 5x7, ...: not multiples of 2, 3 or 4.
LAYERS = {
    "tiled-3x3": lambda: _layer(1, (1, 5, 11, 13), (6, 5, 3, 3), pads=(1, 1, 1, 1)),
    "tiled-strided": lambda: _layer(2, (1, 4, 13, 11), (5, 4, 3, 3), strides=(2, 2), pads=(1, 1, 1, 1)),
    "tiled-grouped": lambda: _layer(3, (1, 4, 10, 9), (6, 2, 3, 3), group=2, pads=(1, 0, 1, 0)),
    "tiled-residual": lambda: _layer(4, (1, 3, 9, 10), (4, 3, 3, 3), with_z=True),
    "tiled-clip": lambda: _layer(5, (1, 3, 11, 7), (4, 3, 3, 3), pads=(1, 1, 1, 1), activation="Clip", clip_max=2.0),
    # 160 pixels fill the vectors of every instruction set: the pointwise GEMM + band rule.
    "pointwise": lambda: _layer(6, (1, 6, 10, 16), (7, 6, 1, 1)),
    "pointwise-residual": lambda: _layer(7, (1, 6, 10, 16), (5, 6, 1, 1), with_z=True),
    "pointwise-clip": lambda: _layer(11, (1, 6, 10, 16), (5, 6, 1, 1), activation="Clip", clip_max=2.0),
    # 35 pixels leave lanes empty: the tiled path (the pointwise one for 4-lane vectors).
    "pointwise-small-plane": lambda: _layer(8, (1, 6, 5, 7), (5, 6, 1, 1)),
    "depthwise": lambda: _layer(9, (1, 6, 11, 10), (6, 1, 3, 3), group=6, pads=(1, 1, 1, 1)),
    "depthwise-multiplier-residual": lambda: _layer(10, (1, 3, 9, 11), (6, 1, 3, 3), group=3, pads=(1, 1, 1, 1),
                                                    with_z=True),
}


@pytest.mark.parametrize("pattern", op.PATTERNS)
@pytest.mark.parametrize("layer", LAYERS)
def test_every_pattern_and_margin_matches_reference_exactly(kernel_path, layer, pattern):
    x, w, b, z, attributes = LAYERS[layer]()
    predicted = {margin: 0 for margin in MARGINS}
    for window in WINDOWS:
        for margin in MARGINS:
            stats = assert_matches_reference(x, w, b, z, window=window, pattern=pattern, margin=margin,
                                              audit=margin == 1.0, **attributes)
            predicted[margin] += stats["predicted"]
    # The layers exercise prediction, less of it as the margin grows.
    assert predicted[0.0] > 0
    assert predicted[0.0] >= predicted[1.0] >= predicted[2.0]


@pytest.mark.parametrize("pattern", ["anti_diagonal", "centre"])
@pytest.mark.parametrize("layer", ["tiled-3x3", "pointwise", "depthwise"])
def test_window_without_a_sample_in_the_plane_is_never_predicted(kernel_path, layer, pattern):
    # Every P is far below zero, so every window with a sample triggers; the bottom-right window,
    # clipped to a 1-column-wide one without a sample, must be computed all the same.
    x, w, _, z, attributes = LAYERS[layer]()
    b = np.full(w.shape[0], -100, np.float32)
    window = 3
    height, width = _output_shape(x, w, attributes)[2:]
    last_rows, last_cols = height % window or window, width % window or window
    assert not reference.sampling_pattern(pattern, window)[:last_rows, :last_cols].any()
    stats = assert_matches_reference(x, w, b, z, window=window, pattern=pattern, **attributes)
    assert stats["predicted"] + stats["zero_diag"] < stats["outputs"]  # some windows were not triggered


@pytest.mark.parametrize("pattern", op.PATTERNS)
@pytest.mark.parametrize("layer", ["tiled-3x3", "pointwise", "depthwise"])
def test_nan_samples_never_trigger(kernel_path, layer, pattern):
    x, w, b, z, attributes = LAYERS[layer]()
    b = np.full(w.shape[0], -50, np.float32)  # every P <= -margin but where X's NaN reaches
    x = x.copy()
    x[0, 0, 3, 4] = np.nan
    x[0, -1, -1, 0] = np.nan
    for margin in (0.0, 1.0):
        stats = assert_matches_reference(x, w, b, z, window=3, pattern=pattern, margin=margin, **attributes)
        assert stats["predicted"] > 0


def _strip_attributes(model, keep):
    node = model.graph.node[0]
    kept = [a for a in node.attribute if a.name in keep]
    del node.attribute[:]
    node.attribute.extend(kept)
    return model


@pytest.mark.parametrize("keep", [("kernel_shape",), ()], ids=["kernel-shape-only", "no-attributes"])
def test_attribute_less_node_means_the_contract_defaults(kernel_path, keep):
    rng = np.random.default_rng(11)
    x = rng.integers(-2, 3, (1, 4, 10, 11)).astype(np.float32)
    w = rng.integers(-1, 2, (5, 4, 3, 3)).astype(np.float32)
    b = rng.integers(-3, 1, 5).astype(np.float32)
    model = _strip_attributes(single_node_model(w, b), keep)
    assert [a.name for a in model.graph.node[0].attribute] == list(keep)
    y, counters = onnxpred.session(model).run(None, {"X": x})
    expected_y, expected_counters = reference.predictive_conv(x, w, b, **op.defaults())
    np.testing.assert_array_equal(y, expected_y)
    assert_counters_match(counters, expected_counters)
    assert counters[2] > 0  # the default window predicts here
