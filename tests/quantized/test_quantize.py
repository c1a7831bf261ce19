"""``onnxpred quantize``: onnxruntime's static quantizer on calibration images, and its errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image
from test_cli_rewrite import tiny_classifier

import onnxpred
from onnxpred.cli import main
from onnxpred.errors import EXIT_INPUT, EXIT_OUTPUT, EXIT_UNSUPPORTED, EXIT_USAGE
from onnxpred.quantization import CALIBRATION_KEY, calibration_images, calibration_subset, quantize

pytest.importorskip("onnxruntime.quantization")


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save_model(tiny_classifier(), path)
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(10):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


def test_quantize_writes_a_qdq_model_the_rewriter_takes(model_path, images, capsys):
    assert main(["quantize", str(model_path), "--data", str(images), "--calibration-images", "4"]) == 0
    output = model_path.with_name("tiny.int8.onnx")
    assert f"wrote {output}" in capsys.readouterr().out
    model = onnx.load(output)
    onnx.checker.check_model(model, full_check=True)
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dequantized_weights = [initializers[n.input[0]] for n in model.graph.node
                           if n.op_type == "DequantizeLinear" and initializers.get(n.input[0]) is not None
                           and initializers[n.input[0]].ndim == 4]
    assert [w.dtype for w in dequantized_weights] == [np.int8, np.int8]
    assert all(initializers[n.input[1]].shape == (8,) for n in model.graph.node  # per output channel
               if n.op_type == "DequantizeLinear" and initializers.get(n.input[0], np.empty(0)).ndim == 4)
    zero_points = {initializers[n.input[2]].dtype for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert zero_points == {np.dtype(np.uint8)}
    # Evenly spread over the 10 images, named in the metadata; the preprocessing is kept.
    assert calibration_images(model) == ["0.png", "2.png", "5.png", "7.png"]
    assert any(p.key == "onnxpred.preprocessing" for p in model.metadata_props)
    _, summary = onnxpred.rewrite_with_summary(model)
    assert [r.pattern for r in summary.rewritten] == ["DQ->Conv->Q", "DQ->Conv->Q"]


def test_the_quantized_model_stays_close_to_the_float_one(model_path, images, tmp_path):
    output = tmp_path / "q.onnx"
    assert main(["quantize", str(model_path), "--data", str(images), "-o", str(output)]) == 0
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    float_logits = onnxpred.session(str(model_path)).run(None, {"input": x})[0]
    int8_logits = onnxpred.session(str(output)).run(None, {"input": x})[0]
    assert 0 < np.abs(int8_logits - float_logits).max() < 0.1 * np.abs(float_logits).max()
    assert len(json.loads(next(p.value for p in onnx.load(output).metadata_props if p.key == CALIBRATION_KEY))) == 10


def test_calibration_subset_is_deterministic_and_spread():
    assert calibration_subset(list(range(100)), 4) == [0, 25, 50, 75]
    assert calibration_subset(list(range(3)), 32) == [0, 1, 2]


@pytest.mark.parametrize("case, code, message", [
    ("output is input", EXIT_OUTPUT, "refusing to overwrite the input"),
    ("no data folder", EXIT_INPUT, "does not exist"),
    ("not a model", EXIT_INPUT, "is not an ONNX model"),
    ("two inputs", EXIT_UNSUPPORTED, "needs a model with one input, this one has 2"),
    ("not images", EXIT_UNSUPPORTED, "needs an image input [N, 3, H, W]; the model's input 'input' is 1x3x16"),
    ("quantized already", EXIT_UNSUPPORTED, "the model is quantized already (it has DequantizeLinear, QuantizeLinear"),
])
def test_errors_are_one_line_with_their_exit_code(model_path, images, tmp_path, capsys, case, code, message):
    args = ["quantize", str(model_path), "--data", str(images)]
    if case == "output is input":
        args += ["-o", str(model_path)]
    elif case == "no data folder":
        args[-1] = str(tmp_path / "missing")
    elif case == "not a model":
        model_path.write_bytes(b"not a model")
    elif case == "quantized already":
        onnx.save_model(quantize(model_path, images, calibration_images=2), model_path)
    else:
        model = tiny_classifier()
        if case == "two inputs":
            model.graph.input.append(onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, [1]))
        else:
            model.graph.input[0].type.tensor_type.shape.dim.pop()
        onnx.save_model(model, model_path)
    before = model_path.read_bytes()
    assert main(args) == code
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert model_path.read_bytes() == before and not model_path.with_name("tiny.int8.onnx").exists()


def test_a_fixed_batch_needs_as_many_calibration_images(tmp_path, images, capsys):
    model = tiny_classifier()
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 4
    path = tmp_path / "batch4.onnx"
    onnx.save_model(model, path)
    assert main(["quantize", str(path), "--data", str(images), "--calibration-images", "3"]) == EXIT_USAGE
    assert "the model's batch size is fixed to 4: calibrate it on at least 4 images, not 3" in capsys.readouterr().err
    assert main(["quantize", str(path), "--data", str(images), "--calibration-images", "6"]) == 0  # one whole batch


def test_calibration_images_must_be_positive(model_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["quantize", str(model_path), "--calibration-images", "0"])
    assert exit_info.value.code == EXIT_USAGE
