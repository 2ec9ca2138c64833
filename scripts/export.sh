#!/usr/bin/env bash
# Install the project into .venv if needed, then export each task of a saved CACL model as its own smallest runnable
# network (DIR/task<name>.onnx and .pt) with DIR/summary.json: components, parameters, file sizes, multiply-adds and
# CPU latency against the dense network (README, "Deploying a task's compressed model").
# Usage: export.sh CHECKPOINT_DIR --out DIR [--dataset NAME] [--model_type T --model_name N] [--format onnx torchscript]
#        [--tasks NAME ...] [--threads N] [--repeats N]
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m deployment.export "$@"
