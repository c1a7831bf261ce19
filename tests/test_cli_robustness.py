"""The CLI on bad input: one line on stderr, a documented exit code, no traceback, the input intact,
no partial output. And several rewrites of one input at once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxpred.errors import EXIT_INPUT, EXIT_OK, EXIT_OUTPUT, EXIT_UNSUPPORTED, EXIT_USAGE


def conv_relu_model(spatial=(8, 8), opset=17) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *spatial])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, *spatial])],
        [w, b],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def no_conv_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "onnxpred.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_clean_failure(result, exit_code, fragment):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == exit_code, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in lines[0], lines[0]


def write(path: Path, content) -> Path:
    if isinstance(content, onnx.ModelProto):
        onnx.save(content, path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


BAD_INPUTS = [
    ("empty", b"", EXIT_INPUT, "empty"),
    ("truncated", conv_relu_model().SerializeToString()[:60], EXIT_INPUT, "not an ONNX model"),
    ("random-bytes", np.random.default_rng(1).bytes(4096), EXIT_INPUT, "not an ONNX model"),
    ("text", "this is not a model\n", EXIT_INPUT, "not an ONNX model"),
    ("unknown-opset", conv_relu_model(opset=999), EXIT_UNSUPPORTED, "opset"),
]


@pytest.mark.parametrize("content, exit_code, fragment", [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_unreadable_or_unsupported_input(tmp_path, content, exit_code, fragment):
    source = write(tmp_path / "model.onnx", content)
    before, files = digest(source), sorted(tmp_path.iterdir())
    assert_clean_failure(run_cli("rewrite", source, "-k", "3"), exit_code, fragment)
    assert digest(source) == before
    assert sorted(tmp_path.iterdir()) == files  # no partial output


def test_missing_file(tmp_path):
    assert_clean_failure(run_cli("rewrite", tmp_path / "absent.onnx", "-k", "3"), EXIT_INPUT, "absent.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("window", ["0", "-1", "abc"])
def test_bad_window(tmp_path, window):
    source = write(tmp_path / "model.onnx", conv_relu_model())
    result = run_cli("rewrite", source, f"-k={window}")
    assert result.returncode == EXIT_USAGE and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_model_without_eligible_conv_writes_nothing(tmp_path):
    source = write(tmp_path / "model.onnx", no_conv_model())
    result = run_cli("rewrite", source, "-k", "3")
    assert result.returncode == EXIT_OK, result.stderr
    assert "no eligible" in (result.stdout + result.stderr).lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_dynamic_spatial_shapes_fail_cleanly_or_rewrite(tmp_path):
    source = write(tmp_path / "model.onnx", conv_relu_model(spatial=("h", "w")))
    before = digest(source)
    result = run_cli("rewrite", source, "-k", "3")
    assert "Traceback" not in result.stderr
    if result.returncode != EXIT_OK:
        assert_clean_failure(result, EXIT_UNSUPPORTED, "dynamic")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert digest(source) == before


def test_missing_external_data(tmp_path):
    model = conv_relu_model()
    onnx.save(model, tmp_path / "model.onnx", save_as_external_data=True, location="model.onnx.data",
              size_threshold=0)
    (tmp_path / "model.onnx.data").unlink()
    before = digest(tmp_path / "model.onnx")
    assert_clean_failure(run_cli("rewrite", tmp_path / "model.onnx", "-k", "3"), EXIT_INPUT, "model.onnx.data")
    assert digest(tmp_path / "model.onnx") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_output_in_missing_folder(tmp_path):
    source = write(tmp_path / "model.onnx", conv_relu_model())
    assert_clean_failure(run_cli("rewrite", source, "-k", "3", "-o", tmp_path / "absent" / "out.onnx"),
                         EXIT_OUTPUT, "absent")


def test_output_under_a_file(tmp_path):
    source = write(tmp_path / "model.onnx", conv_relu_model())
    write(tmp_path / "plain", "x")
    assert_clean_failure(run_cli("rewrite", source, "-k", "3", "-o", tmp_path / "plain" / "out.onnx"),
                         EXIT_OUTPUT, "plain")


def test_output_in_read_only_folder(tmp_path):
    source = write(tmp_path / "model.onnx", conv_relu_model())
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):  # root ignores mode bits: make the folder immutable instead
            if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
                pytest.skip("cannot make a folder read-only here (root without chattr)")
        assert_clean_failure(run_cli("rewrite", source, "-k", "3", "-o", locked / "out.onnx"), EXIT_OUTPUT, "locked")
        assert list(locked.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
        locked.chmod(0o755)


@pytest.mark.parametrize("via", ["same-path", "relative", "symlink"])
def test_output_equal_to_input_is_refused(tmp_path, via):
    source = write(tmp_path / "model.onnx", conv_relu_model())
    before = digest(source)
    if via == "symlink":
        (tmp_path / "alias.onnx").symlink_to(source)
        output = tmp_path / "alias.onnx"
    elif via == "relative":
        output = Path("sub/../model.onnx")
        (tmp_path / "sub").mkdir()
    else:
        output = source
    assert_clean_failure(run_cli("rewrite", source, "-k", "3", "-o", output, cwd=tmp_path), EXIT_OUTPUT, "input")
    assert digest(source) == before


def test_debug_flag_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "rewrite", write(tmp_path / "model.onnx", b""), "-k", "3")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_concurrent_rewrites_of_one_input(tmp_path):
    source = write(tmp_path / "model.onnx", conv_relu_model())
    before = digest(source)
    outputs = [tmp_path / f"out{i}.onnx" for i in range(3)] + [tmp_path / "shared.onnx"] * 3
    with ThreadPoolExecutor(len(outputs)) as pool:
        results = list(pool.map(lambda out: run_cli("rewrite", source, "-k", "3", "-o", out), outputs))
    assert all(r.returncode == EXIT_OK for r in results), [r.stderr for r in results]
    assert digest(source) == before
    written = {digest(p) for p in set(outputs)}
    assert len(written) == 1  # identical rewrites; the shared path holds a whole one, never a mix
    onnx.checker.check_model(onnx.load(tmp_path / "shared.onnx"))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in {"model.onnx", "shared.onnx"} | {f"out{i}.onnx" for i in range(3)}]
    assert leftovers == []
