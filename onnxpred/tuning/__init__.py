"""``onnxpred tune``: per-layer prediction settings under an accuracy budget (see :mod:`.api`)."""

from .api import TuneResult, tune

__all__ = ["TuneResult", "tune"]
