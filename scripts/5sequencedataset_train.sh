#!/usr/bin/env bash
# The 5-dataset sequence (CIFAR10, notMNIST, MNIST, SVHN, FashionMNIST; 10 classes each), one run.
# The paper's hyper-parameters; extra flags are appended (and win), e.g. --gpuid -1 --schedule 1 --repeat 1.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/paper_flags.sh"
exec "$PY" "$ROOT/iBatchLearn.py" "${FIVE_DATASETS_FLAGS[@]}" "$@"
