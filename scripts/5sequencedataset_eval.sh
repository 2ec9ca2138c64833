#!/usr/bin/env bash
# Evaluates a CACL checkpoint on the test sets of the 5-dataset sequence.
# Usage: 5sequencedataset_eval.sh [CHECKPOINT_DIR] [extra flags]; the default checkpoint is pretrained/5sequencedataset_sparse_wt0.1.
# Prints each task's accuracy, the average and the model size.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/evaluate_checkpoint.sh"
evaluate_checkpoint pretrained/5sequencedataset_sparse_wt0.1 --model_name Net_SVD --model_type customnet_SVD --dataset multidataset --first_split_size 10 --other_split_size 10 -- "$@"
