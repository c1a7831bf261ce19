"""All-zero window counting (Figure 2) and the Wilson interval, on hand-checked values."""

from __future__ import annotations

import numpy as np
import pytest

from onnxpred.evaluation import count_zero_windows, wilson_interval
from onnxpred.evaluation.spatial import ZeroWindowTally, summarize
from onnxpred.evaluation.stats import top_k_hits

# Non-zero only at the top-right and bottom-left corners.
CORNERS = np.array([[0, 0, 0, 1],
                    [0, 0, 0, 0],
                    [0, 0, 0, 0],
                    [2, 0, 0, 0]], np.float32)


@pytest.mark.parametrize("window, expected", [
    (1, (14, 16)),  # every zero
    (2, (7, 9)),  # the 2x2 windows at (0, 2) and (2, 0) hold a corner
    (3, (2, 4)),  # (0, 0) and (1, 1) miss both corners
    (4, (0, 1)),
    (5, (0, 0)),  # no window fits
])
def test_count_zero_windows_on_a_hand_made_map(window, expected):
    assert count_zero_windows(CORNERS[None, None], [window]) == [expected]


def test_count_zero_windows_for_several_sizes_at_once():
    assert count_zero_windows(CORNERS[None, None], [3, 1, 5]) == [(2, 4), (14, 16), (0, 0)]


def test_windows_are_per_channel_and_per_image():
    # Channel 1 is all zero; image 1 is all non-zero: windows never span channels or images.
    activations = np.stack([np.stack([CORNERS, np.zeros_like(CORNERS)]), np.ones((2, 4, 4), np.float32)])
    assert count_zero_windows(activations, [3]) == [(2 + 4, 16)]


def test_negative_zero_counts_as_zero_and_nan_does_not():
    plane = np.array([[-0.0, 0.0], [0.0, np.nan]], np.float32)
    assert count_zero_windows(plane[None, None], [1, 2]) == [(3, 4), (0, 1)]


def test_tally_sums_batches_and_the_mean_is_over_layers():
    first, second = ZeroWindowTally("a", (1, 3)), ZeroWindowTally("b", (1, 3))
    first.add(CORNERS[None, None])
    first.add(np.zeros((1, 1, 4, 4), np.float32))
    second.add(np.ones((1, 2, 2, 2), np.float32))
    section = summarize([first, second], (1, 3))
    assert section["layers"][0]["all_zero_fraction"] == [30 / 32, 6 / 8]
    assert section["layers"][0]["shape"] == [1, 4, 4]
    assert section["layers"][1]["all_zero_fraction"] == [0.0, None]  # 2x2 planes hold no 3x3 window
    assert section["mean"] == [(30 / 32 + 0.0) / 2, 6 / 8]


@pytest.mark.parametrize("successes, trials, expected", [
    (5, 10, (0.2366, 0.7634)),
    (0, 10, (0.0, 0.2775)),
    (10, 10, (0.7225, 1.0)),
    (0, 0, (0.0, 1.0)),
])
def test_wilson_interval(successes, trials, expected):
    assert wilson_interval(successes, trials) == pytest.approx(expected, abs=1e-4)


def test_top_k_hits():
    logits = np.array([[0.1, 0.5, 0.2, 0.9], [3.0, 2.0, 1.0, 0.0]])
    labels = np.array([1, 3])
    assert top_k_hits(logits, labels, 1).tolist() == [False, False]
    assert top_k_hits(logits, labels, 2).tolist() == [True, False]
    assert top_k_hits(logits, labels, 5).tolist() == [True, True]
