"""The screening's per-window shortcut against the NumPy reference of the prediction rule."""

from __future__ import annotations

import numpy as np
import pytest

from onnxpred import op
from onnxpred.reference import activate, predict, sampling_pattern
from onnxpred.rewriter.selection import Margin
from onnxpred.tuning.space import Screened, SearchSpace, _Windows, frontier_spread


@pytest.mark.parametrize("window", [2, 3, 4, 5])
@pytest.mark.parametrize("pattern", op.PATTERNS)
def test_window_effects_match_the_reference(window, pattern):
    rng = np.random.default_rng(window)
    p = rng.integers(-4, 3, (2, 3, 11, 7)).astype(np.float32)  # planes that windows do not tile
    a = activate(p)
    margins = [Margin(0.0), Margin(1.0), Margin(0.5, in_sd=True)]
    scales = {"layer": 2.0}
    effects = _Windows(p, a, window).effects(pattern, margins, "layer", scales)
    for margin, share, lost in effects:
        _, sample, triggered = predict(p, a, sampling_pattern(pattern, window), margin.resolve("layer", scales))
        predicted = triggered & ~sample
        assert share == pytest.approx(predicted.mean())
        assert lost == pytest.approx(np.square(a[predicted]).sum() / np.square(a).sum())


def test_frontier_keeps_the_undominated_and_spreads_them():
    def item(share, lost):
        return Screened(None, share, lost)

    measured = [item(0.1, 0.01), item(0.2, 0.005), item(0.3, 0.02), item(0.05, 0.02), item(0.4, 0.1),
                item(0.001, 0.0)]
    frontier = frontier_spread(measured, keep=10)
    assert [(m.predicted_share, m.energy_lost) for m in frontier] == [(0.2, 0.005), (0.3, 0.02), (0.4, 0.1)]
    assert len(frontier_spread(measured, keep=2)) == 2


def test_search_space_refuses_nonsense():
    with pytest.raises(Exception, match="larger than 1"):
        SearchSpace.create(windows=[1])
    with pytest.raises(Exception, match="unknown pattern"):
        SearchSpace.create(patterns=["spiral"])
    space = SearchSpace.create(windows=[1, 3, 3, 2], patterns=["diagonal"], margins=["0", "0.5sd"])
    assert space.windows == (2, 3) and space.needs_scales and len(space.candidates()) == 4
