#!/usr/bin/env bash
# Loads the installed op library in other onnxruntime releases (default: the oldest supported,
# 1.21) inside throwaway virtual environments and runs one PredictiveConv model against the
# NumPy reference. Usage: scripts/check_ort_versions.sh [VERSION ...]
set -euo pipefail
cd "$(dirname "$0")/.."
library=$(python -c "import onnxpred; print(onnxpred.library_path())")
versions=("${@:-1.21.1}")
for version in "${versions[@]}"; do
  venv=$(mktemp -d)
  trap 'rm -rf "$venv"' EXIT
  python -m venv "$venv"
  "$venv/bin/pip" install -q "onnxruntime==$version" onnx numpy
  ONNXPRED_LIBRARY="$library" PYTHONPATH="$PWD:$PWD/tests" "$venv/bin/python" - "$version" <<'PY'
import sys
import numpy as np
import onnxruntime as ort
import onnxpred
from onnxpred import reference
from op_models import single_node_model

rng = np.random.default_rng(0)
x = rng.integers(-2, 3, (2, 4, 9, 11)).astype(np.float32)
w = rng.integers(-2, 3, (6, 4, 3, 3)).astype(np.float32)
y, counters = onnxpred.session(single_node_model(w, pads=(1, 1, 1, 1))).run(None, {"X": x})
expected_y, expected_counters = reference.predictive_conv(x, w, pads=(1, 1, 1, 1))
assert np.array_equal(y, expected_y) and np.array_equal(counters, expected_counters)
print(f"onnxruntime {ort.__version__}: library loads, PredictiveConv matches the reference")
PY
  rm -rf "$venv"
  trap - EXIT
done
