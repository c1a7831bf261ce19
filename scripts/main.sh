#!/usr/bin/env bash
# Sets up a fresh machine (scripts/setup.sh), then the project's main job on EfficientNet-Lite0
# with its pretrained weights and the 20 built-in labelled ImageNet images:
#   export -> rewrite with k = 3 and validate against the original -> report for k = 1..5.
# Everything lands in out/ (override with OUT=...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${OUT:-out}
mkdir -p "$out"
onnxpred export efficientnet_lite0 --dynamic-batch -o "$out/efficientnet_lite0.onnx"
# Validation: window 1 must reproduce the original, then deviations and top-1 agreement at k = 3.
onnxpred rewrite "$out/efficientnet_lite0.onnx" -k 3 -o "$out/efficientnet_lite0.k3.onnx"
onnxpred report "$out/efficientnet_lite0.onnx" -k 1,2,3,4,5 --out "$out/efficientnet_lite0.report" -q
echo "report: $out/efficientnet_lite0.report/report.html"
