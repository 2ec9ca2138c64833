#!/usr/bin/env bash
# Evaluates this project's own CACL model of Split Fashion-MNIST (5 tasks x 2 classes) on the real test set,
# in seconds on a CPU: each task's accuracy, the average and the model size (see pretrained/README.md).
# Usage: fashionmnist_eval.sh [CHECKPOINT_DIR] [extra flags]; the default is pretrained/fashionmnist_cacl.
set -euo pipefail
checkpoint=pretrained/fashionmnist_cacl
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then checkpoint=$1; shift; fi
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/find_fashion_mnist.sh"
if [ ! -d "$checkpoint" ] && [ -d "$ROOT/$checkpoint" ]; then checkpoint="$ROOT/$checkpoint"; fi
exec "$PY" "$ROOT/iBatchLearn.py" --loadmodel "$checkpoint" --model_name Net_SVD --model_type customnet_SVD \
  --dataset FashionMNIST --first_split_size 2 --other_split_size 2 --gpuid -1 "$@"
