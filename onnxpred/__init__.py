"""onnxpred: predict which ReLU outputs of a CNN are zero from their spatial neighbours and skip them.

``rewrite`` turns Conv→ReLU pairs of an ONNX model into ``ai.onnxpred::PredictiveConv`` nodes;
``session`` runs such a model in onnxruntime with the compiled op library loaded.
"""

from .op import COUNTER_NAMES, DOMAIN, OP_TYPE, OPSET_VERSION
from .runtime import library_path, session, session_options

__all__ = ["COUNTER_NAMES", "DOMAIN", "OP_TYPE", "OPSET_VERSION", "library_path", "session", "session_options"]
__version__ = "0.1.0"
