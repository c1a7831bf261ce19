#!/usr/bin/env bash
# Sets up a fresh machine (scripts/setup.sh) and runs the project's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
onnxpred demo
