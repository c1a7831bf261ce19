"""The tiled path's special cases against the NumPy reference, on every instruction set: a reduction too
short to gather (computed in one dense pass, the predicted outputs zeroed after it; on rows that fill
the vectors, by the direct path's row tiles from NCHW) and gather tiles whose horizontal sums are
reduced a vector of accumulators at a time."""

from __future__ import annotations

import numpy as np
import pytest

from onnxpred import reference
from op_models import assert_matches_reference, assert_same_at_one_and_two_threads


def _integer_layer(seed, channels, out_channels, height, width, kernel=3, out_size=None):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.integers(-2, 3, (2, channels, height, width)), 0).astype(np.float32)
    w = rng.integers(-1, 2, (out_channels, channels, kernel, kernel)).astype(np.float32)
    b = rng.integers(-6, 1, out_channels).astype(np.float32)
    z = rng.integers(-2, 2, (2, out_channels, *(out_size or (height, width)))).astype(np.float32)
    return x, w, b, z


@pytest.mark.parametrize("window, pattern", [(2, "diagonal"), (3, "checkerboard"), (4, "corners"), (5, "centre")])
def test_short_reduction_computes_every_output_then_zeroes_the_predicted(kernel_path, window, pattern):
    """2 input channels (a kernel row of 6 floats, shorter than two vectors of every instruction set,
    like a 3-channel stem's on AVX2 and AVX-512) at a size whose windows are clipped at both edges: Y
    and the counters equal the reference's, and every MAC is executed (nothing was gathered)."""
    x, w, b, z = _integer_layer(window, 2, 40, 23, 19)
    attributes = dict(pads=(1, 1, 1, 1), window=window, pattern=pattern, audit=True)
    stats = assert_matches_reference(x, w, b, z, **attributes)
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
    stats = assert_matches_reference(x, w, b, z, **attributes)
    assert 0 < stats["predicted"] < stats["outputs"] // 2


@pytest.mark.parametrize("height, width", [(9, 13), (7, 7), (4, 30)], ids=["tiles of 9 and 10", "a tile of 7", "4x30"])
@pytest.mark.parametrize("out_channels", [21, 70])
def test_window_one_stores_rows_of_consecutive_pixels(kernel_path, height, width, out_channels):
    """At window 1 a dense tile's pixels are consecutive outputs of every plane (a tile may run on into
    the next row), and the tile is transposed into the planes in register blocks: tiles shorter than a
    block, a last block of pixels overlapping the one before, channels left over past whole blocks (21;
    70 = dense blocks of every instruction set and a short last one), with Z and the bias."""
    x, w, b, z = _integer_layer(30 + height, 40, out_channels, height, width)
    stats = assert_matches_reference(x, w, b, z, pads=(1, 1, 1, 1), window=1, audit=True)
    assert stats["predicted"] == 0 and stats["macs_executed"] == stats["macs_dense"]
    assert_same_at_one_and_two_threads(x, w, b, pads=(1, 1, 1, 1), window=1)


@pytest.mark.parametrize("window, pattern", [(2, "diagonal"), (3, "checkerboard"), (4, "anti_diagonal"), (6, "corners")])
@pytest.mark.parametrize("bias_shift", [0, 1000], ids=["predicting", "every window active"])
def test_scattered_tiles_store_by_rows(kernel_path, window, pattern, bias_shift):
    """Dense tiles of samples and of rest outputs hold pixels of a few rows at gaps (with AVX-512 stored
    by row groups under masks; k = 6 corners spans more than a group's 16 columns); 37 output channels
    fill one block and part of another. With the bias raised every window stays active and the rest
    outputs are computed by dense tiles too."""
    x, w, b, z = _integer_layer(40 + window, 40, 37, 19, 31)
    stats = assert_matches_reference(x, w, b + bias_shift, z, pads=(1, 1, 1, 1), window=window, pattern=pattern,
                                     audit=True)
    assert (stats["predicted"] == 0) == (bias_shift > 0)
    assert_same_at_one_and_two_threads(x, w, b + bias_shift, pads=(1, 1, 1, 1), window=window, pattern=pattern)


@pytest.mark.parametrize("window", [1, 2, 3])
@pytest.mark.parametrize("channels, attributes, out_size", [
    (512, dict(pads=(1, 1, 1, 1)), (9, 8)),
    (256, dict(pads=(1, 1, 1, 1), strides=(2, 2)), (5, 4)),
    (512, dict(pads=(2, 2, 2, 2), dilations=(2, 2), group=2), (9, 8)),
], ids=["512 channels", "256 at stride 2", "512 dilated in 2 groups"])
def test_pixels_a_cache_line_apart_in_the_nhwc_copy(kernel_path, window, channels, attributes, out_size):
    """Where neighbouring outputs read pixels a multiple of 2 KiB apart (512 channels; 256 at stride 2), the
    NHWC copy keeps a cache line between pixels, so a kernel row's taps are no longer adjacent: the tiles
    (dense, gathered), the per-plane path and audit's evaluator read the taps one by one, with dilation and
    groups too, on maps of clipped windows like ResNet-18's 7x7 layers."""
    x, w, b, z = _integer_layer(50 + window, channels, 20, 9, 8, out_size=out_size)
    w = w[:, : channels // attributes.get("group", 1)]
    stats = assert_matches_reference(x, w, b - 40, z, window=window, audit=True, **attributes)
    if window > 1:
        assert stats["predicted"] > 0 and stats["pred_miss"] > 0
    assert_same_at_one_and_two_threads(x, w, b - 40, window=window, **attributes)


def _windows_predicted(size, share, channels=128):
    """channels -> channels 3x3 integer weights on a size x size map, with each channel's bias half-way
    between two sample maxima of its k = 2 diagonal windows, so that `share` of its windows are predicted,
    exactly (half-integer biases, integer sums). Returns x, w, b and the share of pairs predicted."""
    rng = np.random.default_rng(size)
    x = np.maximum(rng.integers(-2, 3, (1, channels, size, size)), 0).astype(np.float32)
    w = rng.integers(-1, 2, (channels, channels, 3, 3)).astype(np.float32)
    pre = reference.conv2d(x, w, None, reference.ConvAttributes(pads=(1, 1, 1, 1)))[0]
    sample, _ = reference.window_rule(np.zeros((1, *pre.shape), bool), reference.sampling_pattern("diagonal", 2))
    windows = -(-size // 2)
    maxima = np.full((channels, windows, windows), -np.inf)
    for row, col in zip(*np.nonzero(sample[0, 0])):
        maxima[:, row // 2, col // 2] = np.maximum(maxima[:, row // 2, col // 2], pre[:, row, col])
    maxima = maxima.reshape(channels, -1)
    ordered = np.sort(maxima, axis=1)
    count = round(share * maxima.shape[1])
    threshold = (ordered[:, count - 1] + ordered[:, count]) / 2
    return x, w, (-threshold).astype(np.float32), (maxima <= threshold[:, None]).mean()


@pytest.mark.parametrize("size, gathers", [(14, True), (7, False)], ids=["14x14 gathers", "7x7 dense"])
def test_small_maps_compute_the_rest_outputs_densely(kernel_path, size, gathers):
    """With 40% of the pairs predicted at k = 2, a 14x14 map gathers the rest outputs of the active pairs;
    on 7x7 the clipped windows leave each run of windows about half a full run's rest outputs to share a
    gather tile's weight loads, and dense tiles over every rest output cost less: they execute nearly every
    MAC (gathering would skip about a fifth; a last one-row band whose pairs are mostly predicted may still
    gather). The per-plane path computes only what it keeps."""
    x, w, b, predicted_share = _windows_predicted(size, 0.4)
    assert 0.35 <= predicted_share <= 0.45
    stats = assert_matches_reference(x, w, b, pads=(1, 1, 1, 1), window=2, audit=True)
    assert stats["predicted"] > 0
    executed = stats["macs_executed"] / stats["macs_dense"]
    assert executed < 0.9 if gathers or kernel_path == "scalar" else executed > 0.95


# Floats per vector of each instruction set: on rows that fill the vectors, the direct path computes a
# layer whose kernel row (channels x kernel width) is shorter than three vectors.
_LANES = {"portable": 4, "avx2": 8, "avx512": 16}


@pytest.mark.parametrize("window", [1, 2, 3, 4])
@pytest.mark.parametrize("channels, kernel, stride, in_width, out_width",
                         [(2, 3, 1, 60, 60), (3, 3, 1, 32, 32), (1, 7, 2, 64, 32), (3, 7, 2, 119, 60)],
                         ids=["2ch 3x3", "3ch 3x3", "1ch 7x7 s2", "3ch 7x7 s2 odd"])
@pytest.mark.parametrize("activation", [{}, {"activation": "Clip", "clip_max": 3.0}], ids=["Relu", "Clip"])
def test_stem_rows_match_reference(kernel_path, window, channels, kernel, stride, in_width, out_width, activation):
    """Stems like VGG's 3x3 and ResNet's 7x7 at stride 2 (also on an odd padded width), on rows of 32 or
    60 outputs, which fill the vectors of every instruction set: with 1 or 2 channels every instruction
    set takes the direct path (row tiles full and partial, padded edges, Z, windows clipped at the
    plane's right and bottom edges: 13 rows), with 3 those with wider vectors (the portable one
    gathers the 7x7's runs of 21 floats)."""
    pad = kernel // 2
    in_height = (13 - 1) * stride + kernel - 2 * pad
    x, w, b, z = _integer_layer(20 + window, channels, 20, in_height, in_width, kernel=kernel, out_size=(13, out_width))
    attributes = dict(pads=(pad,) * 4, strides=(stride, stride), window=window, audit=True, **activation)
    stats = assert_matches_reference(x, w, b, z, **attributes)
    if window > 1:
        assert stats["predicted"] > 0 and stats["pred_miss"] > 0
    if kernel_path != "scalar" and channels * kernel < 3 * _LANES[kernel_path]:
        assert stats["macs_executed"] == stats["macs_dense"]
    assert_same_at_one_and_two_threads(x, w, b, pads=(pad,) * 4, strides=(stride, stride), window=window)


@pytest.mark.parametrize("window", [64, 65, 70])
@pytest.mark.parametrize("kernel, channels", [(1, 8), (3, 2)], ids=["pointwise", "direct"])
def test_window_rule_reaching_past_a_word_of_columns(kernel_path, window, kernel, channels):
    """The window rule of the paths that compute whole rows (1x1: pointwise; 2 channels 3x3: direct) with
    windows of 64 columns or more on rows of 160, so that a window's samples lie words of bits apart."""
    rng = np.random.default_rng(window)
    x = np.maximum(rng.integers(-2, 3, (1, channels, 9, 160)), 0).astype(np.float32)
    w = rng.integers(-1, 2, (4, channels, kernel, kernel)).astype(np.float32)
    b = rng.integers(-8, 1, 4).astype(np.float32)
    attributes = dict(pads=(kernel // 2,) * 4, window=window, audit=True)
    stats = assert_matches_reference(x, w, b, **attributes)
    assert stats["predicted"] > 0


@pytest.mark.parametrize("channels, kernel, width, attributes", [
    (2, 3, 64, dict(pads=(2, 2, 2, 2), dilations=(2, 2), window=3)),
    (2, 3, 62, dict(pads=(0, 1, 2, 1), window=2)),
    (3, 5, 64, dict(pads=(2, 2, 2, 2), strides=(1, 2), window=3)),
    (3, 3, 64, dict(pads=(1, 1, 1, 1), strides=(2, 1), window=4, margin=1.0)),
    (1, 7, 94, dict(pads=(3, 3, 3, 3), strides=(3, 3), window=2)),
], ids=["dilated", "asymmetric pads", "strides 1x2", "strides 2x1 margin", "stride 3"])
@pytest.mark.parametrize("bias, weights_as_input", [(True, False), (False, True)], ids=["B", "no B, W input"])
def test_direct_path_geometries_match_reference(kernel_path, channels, kernel, width, attributes, bias,
                                                weights_as_input):
    """Rows of 32 to 64 outputs with short runs, which the direct path takes where they fill the vectors:
    dilation, asymmetric padding, unequal and wider strides, a margin, no bias, weights packed per call."""
    x, w, b, _ = _integer_layer(width + kernel, channels, 20, 17, width, kernel=kernel)
    b = b if bias else None
    attributes = dict(attributes, audit=True)
    stats = assert_matches_reference(x, w, b, weights_as_input=weights_as_input, **attributes)
    assert stats["predicted"] > 0
