"""onnxpred: predict which ReLU outputs of a CNN are zero from their spatial neighbours and skip them.

``rewrite`` turns Conv→ReLU pairs of an ONNX model into ``ai.onnxpred::PredictiveConv`` nodes;
``session`` runs such a model in onnxruntime with the compiled op library loaded.
"""

from .op import COUNTER_NAMES, DOMAIN, OP_TYPE, OPSET_VERSION
from .rewriter.api import rewrite, rewrite_with_summary, set_windows
from .runtime import library_path, session, session_options

__all__ = [
    "COUNTER_NAMES",
    "DOMAIN",
    "OP_TYPE",
    "OPSET_VERSION",
    "library_path",
    "rewrite",
    "rewrite_with_summary",
    "session",
    "session_options",
    "set_windows",
    "tune",
    "TuneResult",
]
__version__ = "0.1.0"

# Last: the tuner uses the evaluation, which reads __version__.
from .tuning.api import TuneResult, tune  # noqa: E402
