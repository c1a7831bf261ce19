"""tune's per-layer timing on real profiles: the original's fused node and the rewritten layer are both
found, for a float model and for its int8 form (whose layers onnxruntime runs as QLinearConv in NHWC)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxpred.evaluation.evaluate import eligible_layers
from onnxpred.quantization import quantize
from onnxpred.rewriter.api import rewrite
from onnxpred.tuning.timing import Timer


@pytest.mark.parametrize("quantized", [False, True])
def test_a_layer_is_timed_in_both_models(small_net, small_data, tmp_path, quantized):
    original = quantize(small_net, small_data, calibration_images=4) if quantized else onnx.load(small_net)
    rewritten = rewrite(original, window=2)
    layer = eligible_layers(rewritten)[0]
    _, channels, height, width = (d.dim_value for d in original.graph.input[0].type.tensor_type.shape.dim)
    image = np.random.default_rng(0).normal(size=(1, channels, height, width)).astype(np.float32)
    timer = Timer([{"input": image}], repeats=2)
    try:
        timed = timer.layer(original, rewritten, layer, threads=1, skipped_macs=1.0)
        again = timer.kernel(original, rewritten, layer, threads=1, fresh_original=True)
    finally:
        timer.close()
    assert timed.original_us > 0 and timed.predictive_us > 0 and timed.reorder_us >= 0
    assert again.original_us > 0 and again.predictive_us > 0  # the original profiled anew
    assert timer.layer(original, rewritten, layer, threads=1, skipped_macs=0.0) is None  # nothing skipped: not timed
