"""The rewrite: Conv→Relu/Clip patterns of an ONNX model become ``ai.onnxpred::PredictiveConv`` nodes.

Layout, in the style of onnx-ir passes and onnxscript rewrite rules: ``passes/`` holds in-place
graph passes (pre-passes that expose patterns, then the fusion pass), ``rules/`` one pattern a
module with its maths, ``api`` the pipeline (model files are read and written by :mod:`onnxpred.model_io`).
"""

from .api import rewrite, rewrite_with_summary, set_windows
from .summary import LayerRewrite, LeftAlone, RewriteSummary

__all__ = ["LayerRewrite", "LeftAlone", "RewriteSummary", "rewrite", "rewrite_with_summary", "set_windows"]
