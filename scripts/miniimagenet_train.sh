#!/usr/bin/env bash
# 20-split miniImageNet (5 classes a task, 84x84), Net_SVD, sparsity weight 0.1, 3 runs.
# The paper's hyper-parameters; extra flags are appended (and win), e.g. --gpuid -1 --schedule 1 --repeat 1.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/paper_flags.sh"
exec "$PY" "$ROOT/iBatchLearn.py" "${MINIIMAGENET_FLAGS[@]}" "$@"
