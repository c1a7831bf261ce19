"""The compiled library: where it is, what it exports and links, how sessions load it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import onnxpred
from op_models import single_node_model


def test_library_path_is_an_existing_file():
    path = Path(onnxpred.library_path())
    assert path.is_absolute() and path.is_file()


@pytest.mark.skipif(shutil.which("nm") is None or shutil.which("readelf") is None, reason="binutils not installed")
def test_library_exports_only_register_custom_ops_and_links_no_onnxruntime():
    path = onnxpred.library_path()
    symbols = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    assert [line.split()[-1] for line in symbols.splitlines()] == ["RegisterCustomOps"]
    dynamic = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    assert "onnxruntime" not in dynamic


def test_library_path_override(monkeypatch, tmp_path):
    monkeypatch.setenv("ONNXPRED_LIBRARY", str(tmp_path / "missing.so"))
    with pytest.raises(onnxpred.runtime.LibraryNotFoundError, match="missing.so"):
        onnxpred.library_path()


@pytest.mark.parametrize("form", ["model", "bytes", "path", "pathlike"])
def test_session_accepts_every_model_form(form, tmp_path):
    w = np.ones((2, 1, 3, 3), np.float32)
    model = single_node_model(w)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    given = {"model": model, "bytes": model.SerializeToString(), "path": str(path), "pathlike": path}[form]
    sess = onnxpred.session(given, intra_op_num_threads=1)
    assert sess.get_providers() == ["CPUExecutionProvider"]
    y, _ = sess.run(None, {"X": np.ones((1, 1, 4, 4), np.float32)})
    assert y.shape == (1, 2, 2, 2)


def test_unknown_session_option_is_refused():
    with pytest.raises(TypeError, match="no_such_option"):
        onnxpred.session_options(no_such_option=1)
