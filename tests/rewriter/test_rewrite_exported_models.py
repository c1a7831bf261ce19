"""The rewrite of the study's CNNs as onnxpred.models exports them (random weights except EfficientNet-Lite)."""

from __future__ import annotations

from collections import Counter

import pytest

import onnxpred
from onnxpred.cli import main
from onnxpred.validation import validate

# name: (PredictiveConv per pattern, convs left alone, ops that must be gone)
EXPECTED = {
    "alexnet": ({"Conv->Relu": 5}, 0),
    "vgg16": ({"Conv->Relu": 13}, 0),
    "resnet18": ({"Conv->Relu": 9, "Conv->Add->Relu": 8}, 3),
    # 16 depthwise + 16 expand + stem + head are Conv->ReLU6; the 16 linear projections stay.
    "efficientnet_lite0": ({"Conv->Clip": 33}, 16),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_rewrite_and_validate(name, exported):
    patterns, left = EXPECTED[name]
    model, summary = onnxpred.rewrite_with_summary(exported(name), window=3)
    assert Counter(layer.pattern for layer in summary.rewritten) == patterns
    assert summary.layers_left == left
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["PredictiveConv"] == sum(patterns.values()) and ops["Conv"] == left
    # validate runs onnx.checker (full) and raises unless every window-1 output is within tolerance.
    report = validate(exported(name), model)
    assert report.window_one[0].name == "logits" and report.window_one[0].top1_agreement == 1.0


def test_resnet18_leaves_the_downsample_shortcuts_alone(exported):
    _, summary = onnxpred.rewrite_with_summary(exported("resnet18"))
    assert all("downsample" in layer.name and "is fused into" in layer.reason for layer in summary.left_alone)
    assert 0.98 < summary.rewritten_macs / summary.conv_macs < 0.995


def test_efficientnet_lite0_folds_its_same_padding_and_validates_on_images(exported, tmp_path):
    model, summary = onnxpred.rewrite_with_summary(exported("efficientnet_lite0"))
    assert len(summary.prepasses["Pad folded"]) == 4 + 1  # the stride-2 depthwise convs and the stem
    assert all(layer.pattern == "Conv->Clip" for layer in summary.rewritten)
    report = validate(exported("efficientnet_lite0"), model, data=None)
    image_report = validate(exported("efficientnet_lite0"), model, data=labelled_images(tmp_path, 4))
    assert image_report.samples == 4 and image_report.accuracy is not None
    assert report.window_one[0].max_abs < 1e-3


def labelled_images(folder, count: int):
    """A dataset folder (labels.csv) of the first ``count`` ImageNet samples the datasets API ships with."""
    from onnxpred.datasets import load_dataset
    from onnxpred.errors import InputError

    try:
        images = load_dataset(None)[:count]
    except InputError as error:
        pytest.skip(str(error))
    rows = [f"{image.path},{image.label}" for image in images]
    (folder / "labels.csv").write_text("\n".join(["file,class_index", *rows]) + "\n")
    return folder


def test_lite0_cli_and_python_api_report_the_same_validation(exported, tmp_path, capsys):
    """`onnxpred rewrite` validates on the built-in labelled images and prints the top-1 agreement;
    the same run through the Python API gives the same numbers."""
    source = exported("efficientnet_lite0")
    assert main(["rewrite", str(source), "-k", "3", "-o", str(tmp_path / "lite0.pred.onnx")]) == 0
    printed = capsys.readouterr().out
    report = validate(source, onnxpred.rewrite(source, window=3))
    assert "20 images from the built-in ImageNet samples" in printed
    assert "top-1 agreement" in report.format()
    assert report.format() in printed
