"""Pre-activation standard deviations, the unit of margins such as ``0.5sd``."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxpred
from onnxpred import reference
from onnxpred.datasets import PreprocessingSpec, load_dataset
from onnxpred.errors import UnsupportedModelError
from onnxpred.evaluation.scales import preactivation_activity, preactivation_sd, preactivation_tensors


def reference_preactivations(tiny_net, original, tiny_pixels) -> dict[str, np.ndarray]:
    pads = {node.name: helper.get_attribute_value(next(a for a in node.attribute if a.name == "pads"))
            for node in original.graph.node if node.op_type == "Conv"}
    x, preactivations = tiny_pixels, {}
    for name, (w, b) in zip(("conv1", "conv2"), tiny_net.weights):
        preactivations[name] = p = reference.conv2d(x, w, b, reference.ConvAttributes(pads=tuple(pads[name])))
        x = np.maximum(p, 0).astype(np.float32)
    return preactivations


def test_standard_deviations_are_those_of_the_activations_inputs(tiny_net, tiny_data, tiny_pixels):
    original = onnx.load(tiny_net.path)
    rewritten = onnxpred.rewrite(original)
    assert preactivation_tensors(original, rewritten) == {"conv1": "conv1", "conv2": "conv2"}
    sd = preactivation_sd(original, rewritten, load_dataset(tiny_data[0]), PreprocessingSpec.from_model(original),
                          batch_size=3)
    expected = {name: float(p.std()) for name, p in reference_preactivations(tiny_net, original, tiny_pixels).items()}
    assert sd == pytest.approx(expected, rel=1e-6)


def test_channel_activity_is_each_channels_share_of_positive_preactivations(tiny_net, tiny_data, tiny_pixels):
    original = onnx.load(tiny_net.path)
    activity = preactivation_activity(original, onnxpred.rewrite(original), load_dataset(tiny_data[0]),
                                      PreprocessingSpec.from_model(original), batch_size=3)
    for name, p in reference_preactivations(tiny_net, original, tiny_pixels).items():
        np.testing.assert_allclose(activity[name], (p > 0).mean(axis=(0, 2, 3)), rtol=1e-12)
        assert 0 < activity[name].min() and activity[name].max() < 1  # the data exercises both sides


def test_a_fused_activation_has_no_observable_preactivation(tiny_net):
    original = onnx.load(tiny_net.path)
    rewritten = onnxpred.rewrite(original)
    relu = next(node for node in original.graph.node if node.op_type == "Relu")
    relu.op_type = "LeakyRelu"  # as if the activation were fused into another op
    with pytest.raises(UnsupportedModelError, match="layer 'conv1': its activation is fused into LeakyRelu"):
        preactivation_tensors(original, rewritten)
