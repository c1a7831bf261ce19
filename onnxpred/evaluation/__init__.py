"""Evaluation of rewritten models: accuracy, prediction outcomes, MAC savings and the spatial correlation
of zero activations, written as ``report.json``, ``report.md`` and a self-contained ``report.html``.

``report`` and ``analyze`` are what the ``onnxpred report`` / ``onnxpred analyze`` commands run;
``crosscheck`` compares the compiled op with a NumPy simulation of the whole rewritten model.
"""

from .report import analyze, report, write_report
from .simulate import Crosscheck, crosscheck, simulator
from .spatial import count_zero_windows
from .stats import wilson_interval

__all__ = ["Crosscheck", "analyze", "count_zero_windows", "crosscheck", "report", "simulator", "wilson_interval",
           "write_report"]
