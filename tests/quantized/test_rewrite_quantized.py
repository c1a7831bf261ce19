"""Quantized models through the whole tool: rewritten with PredictiveQLinearConv, the window-1 rewrite
equal to onnxruntime's int8 original bit for bit, and validate, report, analyze, crosscheck, bench and
bench-layers on them. The rules' own cases are tests/rewriter/test_quantized_rules.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image
from test_bench_layers import library_without_the_int8_op
from test_cli_rewrite import tiny_classifier

import onnxpred
from onnxpred import op
from onnxpred.cli import main
from onnxpred.errors import EXIT_INPUT, EXIT_VALIDATION
from onnxpred.quantization import quantize as quantize_model
from onnxpred.rewriter.passes.order_channels import UNOBSERVABLE_ACTIVITY

sys.path.insert(0, str(Path(__file__).parents[1] / "rewriter"))
from quantized_graphs import add_scalar, copied, float_model, insert_before_quantize, quantize  # noqa: E402

pytest.importorskip("onnxruntime.quantization")


def _with_relu(model):
    edited = copied(model)
    insert_before_quantize(edited, "conv0", "Relu")
    return edited


def _with_wide_clip(model):
    edited = copied(model)
    insert_before_quantize(edited, "conv1", "Clip", add_scalar(edited, "lo", 0.0), add_scalar(edited, "hi", 1e6))
    return edited


QUANTIZED_GRAPHS = {
    "qdq, activation dropped": lambda: quantize(float_model("Relu")),
    "qdq relu6, activation dropped": lambda: quantize(float_model("Clip", clip_max=6.0)),
    "qdq, explicit relu": lambda: _with_relu(quantize(float_model("Relu"))),
    "qdq, explicit clip": lambda: _with_wide_clip(quantize(float_model("Relu"))),
    "qdq, per-tensor weights": lambda: quantize(float_model("Relu"), per_channel=False),
    "qdq, int8 activations": lambda: quantize(float_model("Relu"), activations=np.int8),
    "qlinearconv": lambda: quantize(float_model("Relu"), qoperator=True),
}


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels last"])
@pytest.mark.parametrize("window", [1, 3])
@pytest.mark.parametrize("graph", QUANTIZED_GRAPHS)
def test_window_one_reproduces_the_int8_original_bit_for_bit(graph, window, channels_last):
    model = QUANTIZED_GRAPHS[graph]()
    rewritten, summary = onnxpred.rewrite_with_summary(model, window=window, channels_last=channels_last)
    assert summary.layers_rewritten == 2 and summary.layers_left == 0, summary.format_table()
    x = np.random.default_rng(3).standard_normal((1, 4, 8, 8)).astype(np.float32)
    expected = onnxpred.session(model).run(None, {"X": x})[0]
    at_window_one = onnxpred.session(onnxpred.set_windows(rewritten, 1)).run(None, {"X": x})[0]
    np.testing.assert_array_equal(at_window_one, expected)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """8 labelled 16x16 images: the tiny classifier's preprocessing is a plain crop."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rows = ["file,class_index"]
    for index in range(8):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{index}.png")
        rows.append(f"{index}.png,{index % 10}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def int8_classifier(tmp_path_factory, images):
    """tiny_classifier (two Conv→Relu, a Gemm head) quantized by ``onnxpred quantize``'s library function."""
    folder = tmp_path_factory.mktemp("int8")
    float_path = folder / "tiny.onnx"
    onnx.save_model(tiny_classifier(), float_path)
    path = folder / "tiny.int8.onnx"
    onnx.save_model(quantize_model(float_path, images, calibration_images=4), path)
    return path


def test_rewrite_command_validates_a_quantized_model_bit_for_bit(int8_classifier, images, capsys):
    assert main(["rewrite", str(int8_classifier), "-k", "2", "--data", str(images)]) == 0
    out = capsys.readouterr().out
    assert "conv1  DQ->Conv->Q" in out and "conv2  DQ->Conv->Q" in out
    assert "windows forced to 1, equal bit for bit:" in out and "max |d| 0," in out
    rewritten = onnx.load(int8_classifier.with_name("tiny.int8.pred.onnx"))
    assert [n.op_type for n in rewritten.graph.node if op.is_contract_op(n)] == [op.QLINEAR_OP_TYPE] * 2


def test_validate_fails_when_a_quantized_layer_is_off_by_one_quantum(int8_classifier, tmp_path, capsys):
    rewritten = onnxpred.rewrite(int8_classifier, window=1)
    node = next(n for n in rewritten.graph.node if op.is_predictive_qlinear_conv(n))
    y_scale = next(t for t in rewritten.graph.initializer if t.name == node.input[6])
    y_scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(y_scale) * np.float32(1.01), y_scale.name))
    path = tmp_path / "off.onnx"
    onnx.save_model(rewritten, path)
    assert main(["validate", str(int8_classifier), str(path)]) == EXIT_VALIDATION
    error = capsys.readouterr().err
    assert "deviates from the original's by up to" in error and error.endswith("(tolerance: bit for bit)\n")


def test_report_analyze_and_crosscheck_take_a_quantized_model(int8_classifier, images, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(int8_classifier), "--data", str(images), "-k", "1,2", "--out", str(out), "-q"]) == 0
    content = json.loads((out / "report.json").read_text())
    assert [r["window"] for r in content["results"]] == [1, 2]
    assert content["results"][0]["agreement"] == 1.0 and content["results"][0]["mac_savings"] == 0.0
    assert content["not_rewritten"] == []
    windows_k1 = content["spatial_correlation"]["layers"][0]["all_zero_fraction"][0]
    assert 0 < windows_k1 < 1  # zero activations are counted at the zero point, not at 0 of the uint8 value
    assert main(["analyze", str(int8_classifier), "--data", str(images), "-k", "1", "-q"]) == 0
    assert main(["crosscheck", str(int8_classifier), "--data", str(images), "-k", "2", "-q"]) == 0
    assert "PASSED" in capsys.readouterr().out


@pytest.mark.parametrize("flag, ordered", [([], True), (["--no-order-channels"], False)])
def test_bench_times_a_quantized_model_per_layer_its_channels_ordered_by_default(int8_classifier, images, capsys,
                                                                                 flag, ordered):
    assert main(["bench", str(int8_classifier), "-k", "2", "--data", str(images), "--images", "2",
                 "--threads", "1", "--repeats", "1", *flag]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "conv2" in out and "end to end: original" in out
    assert ("channels ordered by their activity on the images after the first 2 of the data" in out) == ordered


def test_bench_refuses_to_time_int8_layers_against_a_build_without_the_int8_op(int8_classifier, images, tmp_path,
                                                                               capsys, monkeypatch):
    float_only = library_without_the_int8_op(tmp_path, monkeypatch)
    assert main(["bench", str(int8_classifier), "-k", "2", "--data", str(images), "--images", "2", "--threads", "1",
                 "--repeats", "1", "--against", str(float_only)]) == EXIT_INPUT
    err = capsys.readouterr().err.strip()
    assert "an op library without this version's channels-last PredictiveQLinearConv" in err and "\n" not in err


def test_bench_keeps_the_order_of_layers_whose_activity_it_cannot_observe(images, tmp_path, capsys):
    """In QOperator form each activation is fused into its QLinearConv: nothing to measure the channels by."""
    path = tmp_path / "qoperator.onnx"
    onnx.save_model(quantize(tiny_classifier(), qoperator=True), path)
    assert main(["bench", str(path), "-k", "2", "--data", str(images), "--images", "2", "--threads", "1",
                 "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert UNOBSERVABLE_ACTIVITY in out and "end to end: original" in out


def test_bench_layers_int8(capsys):
    assert main(["bench-layers", "--int8", "--models", "resnet18", "--layer", "layer4", "-k", "2", "--shares", "0.5",
                 "--threads", "1", "--repeats", "1"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    # The measured share of predicted outputs: half the windows, each with 2 of its 4 outputs predicted.
    assert row[:2] == ["resnet18", "layer4"] and 0.15 < float(row[5]) <= 0.25


def test_bench_layers_int8_refuses_grouped_layers(capsys):
    assert main(["bench-layers", "--int8", "--models", "efficientnet_lite0_depthwise"]) == 2
    assert "PredictiveQLinearConv v1 takes ungrouped convs only" in capsys.readouterr().err


def test_margins_in_sd_of_the_qdq_graphs_float_conv_output(int8_classifier, images, tmp_path):
    output = tmp_path / "sd.onnx"
    assert main(["rewrite", str(int8_classifier), "--margin", "0.5sd", "--data", str(images), "--no-validate",
                 "-o", str(output)]) == 0
    margins = [op.node_attributes(n)["margin"] for n in onnx.load(output).graph.node if op.is_contract_op(n)]
    assert len(margins) == 2 and all(m > 0 for m in margins)


def test_margins_in_sd_need_an_observable_pre_activation(tmp_path, capsys):
    path = tmp_path / "qoperator.onnx"
    onnx.save_model(quantize(float_model("Relu"), qoperator=True), path)
    assert main(["rewrite", str(path), "--margin", "0.5sd", "--no-validate"]) == 4
    assert "its activation is fused into QLinearConv in the original" in capsys.readouterr().err


def test_zero_activations_of_int8_layers_are_their_zero_point():
    from onnxpred.evaluation import count_zero_windows
    from onnxpred.evaluation.evaluate import eligible_layers

    rewritten = onnxpred.rewrite(quantize(float_model("Relu"), activations=np.int8), window=1, expose_counters=True)
    assert [layer.zero for layer in eligible_layers(rewritten)] == [-128, -128]
    plane = np.full((1, 1, 3, 3), -128, np.int8)
    plane[0, 0, 2, 2] = -127
    assert count_zero_windows(plane, [1, 2], zero=-128) == [(8, 9), (3, 4)]
