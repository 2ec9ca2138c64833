#!/usr/bin/env bash
# Evaluates a CACL checkpoint on the 20-split CIFAR-100 test set.
# Usage: cifar100_eval.sh [CHECKPOINT_DIR] [extra flags]; the default checkpoint is pretrained/CNet_CIFAR100_finalmodel_sparse_wt0.1.
# Prints each task's accuracy, the average and the model size.
set -euo pipefail
checkpoint=pretrained/CNet_CIFAR100_finalmodel_sparse_wt0.1
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then checkpoint=$1; shift; fi
source "$(dirname "$0")/setup_env.sh"
if [ ! -d "$checkpoint" ] && [ -d "$ROOT/$checkpoint" ]; then checkpoint="$ROOT/$checkpoint"; fi
exec "$PY" "$ROOT/iBatchLearn.py" --loadmodel "$checkpoint" --model_name Net_SVD --model_type customnet_SVD --dataset CIFAR100 --first_split_size 5 --other_split_size 5 "$@"
