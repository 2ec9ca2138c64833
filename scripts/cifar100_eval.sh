#!/usr/bin/env bash
# Evaluates a CACL checkpoint on the 20-split CIFAR-100 test set.
# Usage: cifar100_eval.sh [CHECKPOINT_DIR] [extra flags]; the default checkpoint is pretrained/CNet_CIFAR100_finalmodel_sparse_wt0.1.
# Prints each task's accuracy, the average and the model size.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/evaluate_checkpoint.sh"
evaluate_checkpoint pretrained/CNet_CIFAR100_finalmodel_sparse_wt0.1 --model_name Net_SVD --model_type customnet_SVD --dataset CIFAR100 --first_split_size 5 --other_split_size 5 -- "$@"
