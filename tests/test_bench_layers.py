"""bench-layers builds inputs with the predicted share it states, for any pattern and margin."""

from __future__ import annotations

import pytest

from onnxpred import reference
from onnxpred.bench.layers import LayerShape, layer_inputs, predictive_model
from onnxpred.runtime import session


@pytest.mark.parametrize("pattern, margin", [("diagonal", 0.0), ("checkerboard", 0.5), ("centre", 2.0)])
def test_layer_inputs_trigger_the_stated_share_of_windows(pattern, margin):
    layer = LayerShape("test", 8, 8, 12)  # 12x12 outputs: 16 full 3x3 windows per channel
    window, share = 3, 0.5
    x, w, b = layer_inputs(layer, window, share, pattern=pattern, margin=margin)
    model = predictive_model(layer, w, b, window, pattern=pattern, margin=margin)
    _, counters = session(model).run(None, {"X": x})
    samples = int(reference.sampling_pattern(pattern, window).sum())
    triggered = round(share * 16) * layer.out_channels
    assert counters[1] == triggered * samples  # zero_diag
    assert counters[2] == triggered * (window**2 - samples)  # predicted
