"""Which op library a benchmark session loads: the installed one, or another build (``--against``).

Two builds of the library load side by side in one process: onnxruntime registers a custom-op library per
session (``SessionOptions.register_custom_ops_library`` dlopens its path, RTLD_LOCAL), so each session runs
the build it registered. A copy at another path is loaded again (glibc tells files apart by inode), and the
library exports only ``RegisterCustomOps``, so the two builds' symbols never bind to each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import op
from ..errors import InputError
from ..runtime import library_path, quiet_options


def bench_options(threads: int, library: Optional[str] = None):
    """onnxruntime session options of :func:`onnxpred.runtime.quiet_options` with the op library ``library``
    registered (None: the installed one). ``runtime.session_options`` always registers the installed one,
    and a session takes one library per domain."""
    import onnxruntime as ort

    settings = quiet_options(threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings["intra_op_num_threads"]
    opts.graph_optimization_level = settings["graph_optimization_level"]
    for key, value in settings["config"].items():
        opts.add_session_config_entry(key, value)
    opts.register_custom_ops_library(library or library_path())
    return opts


def bench_session(model: Union[str, onnx.ModelProto], opts):
    """An onnxruntime CPU session of ``model`` (a path or a ModelProto) with ``opts``."""
    import onnxruntime as ort

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def check_op_library(path: str) -> str:
    """``path`` resolved, once a PredictiveConv session with it as the op library has run; else InputError."""
    if not Path(path).is_file():
        raise InputError(f"--against {path}: no such file")
    resolved = str(Path(path).resolve())
    node = op.make_node(["X", "W"], ["Y"], name="probe", window=1, kernel_shape=[1, 1], pads=[0] * 4,
                        strides=[1, 1], group=1)
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 1, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "W")])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), op.opset_import()])
    try:
        bench_session(probe, bench_options(1, resolved)).run(None, {"X": np.ones((1, 1, 1, 1), np.float32)})
    except Exception as error:  # onnxruntime's errors (dlopen, a missing symbol, an unknown op) share no base
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"--against {path}: not an onnxpred op library ({reason})") from None
    return resolved
