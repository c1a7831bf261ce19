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


def check_op_library(path: str, quantized: bool = False) -> str:
    """``path`` resolved, once a PredictiveConv session with it as the op library has run, and with
    ``quantized`` (int8 layers will be timed) a channels-last PredictiveQLinearConv session too; else
    InputError. Float layers can be timed against a build from before the int8 op; int8 layers only against
    one with channels_last, as an older build would read their NHWC tensors as NCHW."""
    if not Path(path).is_file():
        raise InputError(f"--against {path}: no such file")
    resolved = str(Path(path).resolve())
    try:
        ones = np.ones((1, 1, 1, 1), np.float32)
        _run_probe(resolved, ones, op.OP_TYPE, {}, [("W", ones)])
    except Exception as error:  # onnxruntime's errors (dlopen, a missing symbol, an unknown op) share no base
        raise InputError(f"--against {path}: not an onnxpred op library ({_first_line(error)})") from None
    if quantized:
        check_quantized_op(resolved)
    return resolved


def check_quantized_op(library: str) -> None:
    """InputError unless the op library at ``library`` runs a channels-last PredictiveQLinearConv."""
    # x [1, 1, 1, 2] NHWC: 2 channels, which w [1, 2, 1, 1] needs; read as NCHW it has 1.
    quantized = [("x_scale", np.float32(1)), ("x_zero_point", np.uint8(0)), ("w", np.ones((1, 2, 1, 1), np.int8)),
                 ("w_scale", np.float32(1)), ("w_zero_point", np.int8(0)), ("y_scale", np.float32(1)),
                 ("y_zero_point", np.uint8(0))]
    try:
        _run_probe(library, np.ones((1, 1, 1, 2), np.uint8), op.QLINEAR_OP_TYPE, {"channels_last": 1}, quantized)
    except Exception as error:
        raise InputError(f"--against {library}: an op library without this version's channels-last "
                         f"PredictiveQLinearConv ({_first_line(error)})") from None


def _run_probe(library: str, x: np.ndarray, op_type: str, attributes: dict, constants) -> None:
    """One 1x1 node of ``op_type`` on ``x`` with ``constants`` as its other inputs, run with ``library``."""
    names = ["X", *(name for name, _ in constants)]
    node = op.make_node(names, ["Y"], name="probe", op_type=op_type, window=1, kernel_shape=[1, 1], pads=[0] * 4,
                        strides=[1, 1], group=1, **attributes)
    element = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("X", element, list(x.shape))],
                              [helper.make_tensor_value_info("Y", element, None)],
                              [numpy_helper.from_array(np.asarray(value), name) for name, value in constants])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), op.opset_import()])
    opts = bench_options(1, library)
    opts.log_severity_level = 4  # a failing probe is reported by the caller, not logged by onnxruntime
    bench_session(probe, opts).run(None, {"X": x})


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
