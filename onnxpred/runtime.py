"""Runtime glue: where the compiled op library is, and onnxruntime sessions that load it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import onnx

_LIBRARY_NAME = "libonnxpred_ops.so"
ModelLike = Union[str, os.PathLike, bytes, onnx.ModelProto]


class LibraryNotFoundError(RuntimeError):
    """The compiled op library is missing: the package was not installed with its build."""


def library_path() -> str:
    """Absolute path of the compiled PredictiveConv library.

    ``ONNXPRED_LIBRARY`` overrides it (a sanitizer build, say); otherwise the library installed
    inside the package is used.
    """
    override = os.environ.get("ONNXPRED_LIBRARY")
    if override:
        path = Path(override)
        if not path.is_file():
            raise LibraryNotFoundError(f"ONNXPRED_LIBRARY={override} is not a file")
        return str(path.resolve())
    from . import __path__ as package_dirs  # editable installs may span several folders

    for folder in package_dirs:
        candidate = Path(folder) / _LIBRARY_NAME
        if candidate.is_file():
            return str(candidate.resolve())
    raise LibraryNotFoundError(
        f"{_LIBRARY_NAME} is not installed beside the onnxpred package; install the package "
        "(`pip install .`), which compiles it"
    )


def quiet_options(threads: int = 0, optimization_level: Optional[object] = None) -> dict:
    """Options for sessions that take turns on the same cores (an original and its rewrite, several
    windows): level ALL unless ``optimization_level`` is given, ``threads`` intra-op threads (0:
    onnxruntime's default), and pools that do not spin, so an idle session's threads do not take
    the cores of the one running."""
    import onnxruntime as ort

    return dict(
        intra_op_num_threads=threads,
        graph_optimization_level=optimization_level or ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        config={"session.intra_op.allow_spinning": "0"},
    )


def session_options(**options: Any):
    """``onnxruntime.SessionOptions`` with the op library registered.

    Keyword arguments set attributes of the options (``intra_op_num_threads=2``,
    ``graph_optimization_level=...``); ``config`` is a dict of session config entries.
    """
    import onnxruntime as ort

    config = options.pop("config", {})
    opts = ort.SessionOptions()
    for name, value in options.items():
        if not hasattr(opts, name):
            raise TypeError(f"onnxruntime.SessionOptions has no option {name!r}")
        setattr(opts, name, value)
    for key, value in config.items():
        opts.add_session_config_entry(key, str(value))
    opts.register_custom_ops_library(library_path())
    return opts


def session(model: ModelLike, **options: Any):
    """An ``onnxruntime.InferenceSession`` on the CPU provider with PredictiveConv available.

    ``model`` is a path, serialized bytes or an ``onnx.ModelProto``; ``options`` go to
    :func:`session_options`. A PredictiveConv node with an attribute the op's contract does not know
    is refused (:class:`onnxpred.op.ContractError`).
    """
    import onnxruntime as ort

    from .op import check_model

    if isinstance(model, onnx.ModelProto):
        check_model(model, names_only=True)
        model = model.SerializeToString()
    else:
        if isinstance(model, os.PathLike):
            model = os.fspath(model)
        # Graph only, no weights: onnxruntime would run a misspelt attribute's default silently.
        check_model(onnx.load_model_from_string(model) if isinstance(model, bytes)
                    else onnx.load(model, load_external_data=False), names_only=True)
    return ort.InferenceSession(model, sess_options=session_options(**options), providers=["CPUExecutionProvider"])
