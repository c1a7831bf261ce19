"""``onnxpred rewrite``, ``validate`` and ``export`` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import onnxpred
from onnxpred.cli import main
from onnxpred.datasets import PREPROCESSING_KEY, PreprocessingSpec
from onnxpred.errors import EXIT_INPUT, EXIT_OUTPUT, EXIT_USAGE, EXIT_VALIDATION, ValidationError


def tiny_classifier(seed: int = 0) -> onnx.ModelProto:
    """input [1, 3, 16, 16] → conv1 → Relu → conv2 → Relu → GlobalAveragePool → Gemm → logits [1, 10]."""
    rng = np.random.default_rng(seed)

    def weights(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["logits"], transB=1),
    ]
    initializers = [weights("w1", 8, 3, 3, 3), weights("b1", 8), weights("w2", 8, 8, 3, 3), weights("fc", 10, 8),
                    weights("fc_b", 10)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key=PREPROCESSING_KEY, value=PreprocessingSpec(resize=16, crop=16).to_json())
    return model


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save_model(tiny_classifier(), path)
    return path


def windows(path) -> dict[str, int]:
    model = onnx.load(path)
    return {n.name: next(a.i for a in n.attribute if a.name == "window") for n in model.graph.node
            if n.op_type == "PredictiveConv"}


def test_rewrite_prints_the_table_and_the_validation(model_path, capsys):
    assert main(["rewrite", str(model_path), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "layer  pattern     input      output     MACs/image  window" in out
    assert "conv1  Conv->Relu  1x3x16x16  1x8x16x16       55.3K       2" in out
    assert "2 layers rewritten, 0 left alone" in out
    assert "windows forced to 1, within |d| <= 0.0001 * max(1, max|original|) + 0.0001 * |original|" in out
    assert "top-1 agreement" in out and out.rstrip().endswith("wrote " + str(model_path.with_name("tiny.pred.onnx")))
    assert windows(model_path.with_name("tiny.pred.onnx")) == {"conv1": 2, "conv2": 2}


def test_layer_selection_window_map_counters_and_audit(model_path, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    assert main(["rewrite", str(model_path), "-o", str(out), "--exclude", "conv2", "--no-validate"]) == 0
    assert windows(out) == {"conv1": 3} and "validation" not in capsys.readouterr().out
    (tmp_path / "windows.json").write_text(json.dumps({"conv2": 5}))
    assert main(["rewrite", str(model_path), "-o", str(out), "--window-map", str(tmp_path / "windows.json"),
                 "--counters", "--audit", "--no-validate"]) == 0
    assert windows(out) == {"conv1": 3, "conv2": 5}
    model = onnx.load(out)
    assert [o.name for o in model.graph.output] == ["logits", "conv1.counters", "conv2.counters"]
    assert main(["rewrite", str(model_path), "-o", str(out), "--layers", "conv2", "--no-validate"]) == 0
    assert windows(out) == {"conv2": 3}


def test_validation_on_images(model_path, tmp_path, capsys):
    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(data / f"{index}.png")
    (data / "labels.csv").write_text("file,class_index\n0.png,1\n1.png,2\n2.png,3\n")
    assert main(["rewrite", str(model_path), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"validation on 3 images from {data}" in out and "top-1 accuracy on the labelled images" in out
    assert main(["validate", str(model_path), str(model_path.with_name("tiny.pred.onnx")), "--data", str(data),
                 "--max-images", "2"]) == 0
    assert "validation on 2 images" in capsys.readouterr().out


def test_validate_rejects_a_model_that_computes_something_else(model_path, tmp_path, capsys):
    other = tmp_path / "other.onnx"
    onnx.save_model(tiny_classifier(seed=1), other)
    assert main(["validate", str(model_path), str(other)]) == EXIT_VALIDATION
    err = capsys.readouterr().err
    assert err.startswith("onnxpred validate: error: with every window 1 the rewritten model's output 'logits'")
    assert len(err.splitlines()) == 1


def test_validate_reports_a_model_onnxruntime_refuses(model_path, tmp_path, capsys):
    assert main(["rewrite", str(model_path), "--no-validate"]) == 0
    broken = onnx.load(model_path.with_name("tiny.pred.onnx"))
    # Within the contract's ranges, but contradicting W [8, 3, 3, 3]: only the op itself can refuse it.
    next(a for a in broken.graph.node[0].attribute if a.name == "kernel_shape").ints[:] = [5, 5]
    onnx.save_model(broken, tmp_path / "broken.onnx")
    assert main(["validate", str(model_path), str(tmp_path / "broken.onnx")]) == EXIT_VALIDATION
    err = capsys.readouterr().err
    assert err.startswith("onnxpred validate: error: onnxruntime cannot run the rewritten model: ")
    assert len(err.splitlines()) == 1


def test_failed_validation_writes_nothing(model_path, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise ValidationError("outputs differ")

    monkeypatch.setattr("onnxpred.commands.rewrite.validate", fail)
    assert main(["rewrite", str(model_path)]) == EXIT_VALIDATION
    assert sorted(p.name for p in model_path.parent.iterdir()) == ["tiny.onnx"]
    assert capsys.readouterr().err == "onnxpred rewrite: error: outputs differ\n"


@pytest.mark.parametrize(
    "arguments, code, message",
    [
        (["{missing}"], EXIT_INPUT, "cannot read {missing}: No such file or directory"),
        (["{model}", "-o", "{model}"], EXIT_OUTPUT, "refusing to overwrite the input {model}"),
        (["{model}", "-o", "{folder}/missing/out.onnx"], EXIT_OUTPUT,
         "cannot write {folder}/missing/out.onnx: the folder {folder}/missing does not exist"),
        (["{model}", "--layers", "conv9"], EXIT_USAGE, "layers: no layer named 'conv9'"),
        (["{model}", "-k", "0"], EXIT_USAGE, "window must be an integer from 1 to 4096, got 0"),
        (["{model}", "--window-map", "{folder}/bad.json"], EXIT_INPUT, "the window map {folder}/bad.json is not JSON"),
        (["{model}", "--window-map", "{folder}/list.json"], EXIT_USAGE, "the window map {folder}/list.json must be a JSON object"),
        (["{model}", "--data", "{folder}/no-images"], EXIT_INPUT, "dataset folder {folder}/no-images does not exist"),
    ],
    ids=["missing-input", "output-is-input", "missing-folder", "unknown-layer", "window-0", "bad-json",
         "json-list", "missing-data"],
)
def test_errors_are_one_line_with_their_exit_code(arguments, code, message, model_path, capsys):
    folder = model_path.parent
    (folder / "bad.json").write_text("{conv1: 2")
    (folder / "list.json").write_text("[1, 2]")
    before = model_path.read_bytes()
    names = dict(model=model_path, missing=folder / "missing.onnx", folder=folder)
    assert main(["rewrite", *(a.format(**names) for a in arguments)]) == code
    err = capsys.readouterr().err
    assert err.startswith(f"onnxpred rewrite: error: {message.format(**names)}") and len(err.splitlines()) == 1
    assert model_path.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["bad.json", "list.json", "tiny.onnx"]


def test_layers_and_exclude_together_are_refused(model_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["rewrite", str(model_path), "--layers", "conv1", "--exclude", "conv2"])
    assert exit_info.value.code == EXIT_USAGE


def test_export(tmp_path, capsys):
    pytest.importorskip("torch", reason="export needs torch")
    out = tmp_path / "resnet18.onnx"
    assert main(["export", "resnet18", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"wrote {out}: ") and "input input 1x3x224x224" in captured.out
    assert "note: resnet18: no weights given" in captured.err
    assert [p.name for p in tmp_path.iterdir()] == ["resnet18.onnx"]
    assert main(["export", "resnet19"]) == EXIT_USAGE
    assert "unknown model 'resnet19'" in capsys.readouterr().err


def test_entry_point_in_a_fresh_interpreter(model_path):
    result = subprocess.run(
        [sys.executable, "-m", "onnxpred.cli", "rewrite", str(model_path), "-o", str(model_path.with_name("p.onnx"))],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "2 layers rewritten" in result.stdout and "requested windows" in result.stdout
    assert model_path.with_name("p.onnx").is_file()


def predictor_attributes(path) -> dict[str, tuple]:
    from onnxpred import op

    return {n.name: (a["window"], a["pattern"], round(a["margin"], 5))
            for n in onnx.load(path).graph.node if op.is_predictive_conv(n) for a in [op.node_attributes(n)]}


def test_rewrite_with_a_pattern_a_margin_and_a_per_layer_map(model_path, tmp_path, capsys):
    window_map = tmp_path / "map.json"
    window_map.write_text(json.dumps({"conv2": {"window": 2, "pattern": "checkerboard"}}))
    out = tmp_path / "out.onnx"
    assert main(["rewrite", str(model_path), "-o", str(out), "--pattern", "anti_diagonal", "--margin", "0.5",
                 "--window-map", str(window_map)]) == 0
    assert predictor_attributes(out) == {"conv1": (3, "anti_diagonal", 0.5), "conv2": (2, "checkerboard", 0.5)}
    assert "anti_diagonal" in capsys.readouterr().out


def test_ordered_channels_are_listed_and_validated(model_path, tmp_path, capsys):
    out = tmp_path / "ordered.onnx"
    assert main(["rewrite", str(model_path), "--order-channels", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 layers' channels ordered by activity, 1 kept in channel order" in printed, printed
    plain = onnxpred.rewrite(tiny_classifier(), channels_last=True)
    weights = {name: {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}["w1"]
               for name, m in (("plain", plain), ("ordered", onnx.load(out)))}
    assert not np.array_equal(weights["plain"], weights["ordered"])
    assert sorted(map(tuple, weights["plain"].reshape(8, -1))) == sorted(map(tuple, weights["ordered"].reshape(8, -1)))


def test_margins_in_standard_deviations_are_measured_on_the_data(model_path, tmp_path, capsys):
    from onnxpred.evaluation.scales import layer_statistics, preactivation_sd

    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(0)
    with open(data / "labels.csv", "w") as labels:
        labels.write("file,class_index\n")
        for index in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / f"{index}.png")
            labels.write(f"{index}.png,{index}\n")
    out = tmp_path / "out.onnx"
    assert main(["rewrite", str(model_path), "-o", str(out), "--margin", "0.5sd", "--data", str(data)]) == 0
    scales = layer_statistics(preactivation_sd, model_path, data)
    assert predictor_attributes(out) == {name: (3, "diagonal", round(float(np.float32(0.5 * sd)), 5))
                                         for name, sd in scales.items()}
    assert "0.5sd = " in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["--pattern", "spiral"], "pattern must be one of diagonal"),
    (["--margin", "-0.5"], "margin must be >= 0"),
    (["--margin", "half"], "margin must be a number >= 0 or a multiple"),
])
def test_bad_predictor_settings_are_one_line_errors(model_path, capsys, arguments, message):
    assert main(["rewrite", str(model_path), *arguments]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_outputs_that_are_not_regular_files_are_refused_and_kept(model_path, tmp_path, capsys):
    import os
    import stat

    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    assert main(["rewrite", str(model_path), "-o", str(fifo), "--no-validate"]) == EXIT_OUTPUT
    assert "it is not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    assert main(["rewrite", str(model_path), "-o", str(folder), "--no-validate"]) == EXIT_OUTPUT
    assert "it is a folder" in capsys.readouterr().err
    if os.geteuid() == 0:  # a copy of the null device, as the issue reports it
        device = tmp_path / "null.onnx"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        assert main(["rewrite", str(model_path), "-o", str(device), "--no-validate"]) == EXIT_OUTPUT
        assert stat.S_ISCHR(device.lstat().st_mode)


def test_an_output_behind_a_symbolic_link_is_written_through_it(model_path, tmp_path):
    target = tmp_path / "real.onnx"
    target.write_bytes(b"old")
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    assert main(["rewrite", str(model_path), "-o", str(link), "--no-validate"]) == 0
    assert link.is_symlink() and windows(target) == {"conv1": 3, "conv2": 3}
