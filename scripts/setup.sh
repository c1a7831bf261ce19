#!/usr/bin/env bash
# Installs everything onnxpred needs on a fresh Debian machine, then the package itself:
# system build tools, onnxruntime's C/C++ headers (cached, see custom_ops/cmake), PyTorch's
# CPU wheel, the labelled ImageNet sample images, and onnxpred with its model, test and ray extras.
# Safe to re-run: steps already done are quick no-ops.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*" >&2; }

system_packages=(g++ binutils ca-certificates dpkg)
missing=()
for package in "${system_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing system packages: ${missing[*]} (run as root or install them first)"; exit 1
  fi
  log "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ -z "${ONNXRUNTIME_INCLUDE_DIR:-}" && ! -f /usr/include/onnxruntime/onnxruntime_c_api.h ]]; then
  log "onnxruntime headers: $(bash custom_ops/cmake/fetch_ort_headers.sh)"
fi

python=${PYTHON:-python3}
pip=("$python" -m pip install --quiet --disable-pip-version-check)
# The CPU build of torch (a bare `torch` requirement would pull a multi-GB CUDA build).
"${pip[@]}" "torch==2.13.0"
# foolbox ships 20 labelled ImageNet images, the default data set; only its data is used.
"${pip[@]}" --no-deps "foolbox==3.3.4"
"${pip[@]}" scikit-build-core ninja cmake
log "building and installing onnxpred"
"${pip[@]}" --no-build-isolation -e ".[models,test,ray]"
"$python" -c "import onnxpred; print('[setup] op library:', onnxpred.library_path())" >&2
