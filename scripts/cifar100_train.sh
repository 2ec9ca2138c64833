#!/usr/bin/env bash
# 20-split CIFAR-100 (5 classes a task), Net_SVD, sparsity weights 0.1 and 0.4, 3 runs each.
# The paper's hyper-parameters; extra flags are appended (and win), e.g. --gpuid -1 --schedule 1 --repeat 1.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/paper_flags.sh"
exec "$PY" "$ROOT/iBatchLearn.py" "${CIFAR100_FLAGS[@]}" "$@"
