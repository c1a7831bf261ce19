#!/usr/bin/env bash
# Builds the op library with AddressSanitizer + UndefinedBehaviorSanitizer and runs the op test
# suite against it. Python itself is not instrumented, so the sanitizer runtimes are preloaded;
# leak detection is off because the interpreter never frees everything at exit.
# Usage: scripts/sanitize.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/sanitize
cmake -S custom_ops -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DONNXPRED_SANITIZE=ON >/dev/null
cmake --build "$build"
export ONNXPRED_LIBRARY="$PWD/$build/libonnxpred_ops.so"
export LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Deselected: onnxruntime's own aligned operator new (allocating the 0.3 EB output) aborts under
# ASan instead of throwing; the op is not involved.
python3 -m pytest -q -p no:cacheprovider tests/test_predictive_conv.py tests/test_predictive_conv_errors.py \
  tests/test_op_robustness.py tests/test_library.py tests/test_depthwise.py tests/test_patterns.py tests/test_tiled_kernel.py \
  tests/quantized/test_qlinear_op.py \
  --deselect "tests/test_op_robustness.py::test_huge_shapes_fail_cleanly[allocation-too-large]" "$@"
