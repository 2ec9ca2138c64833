#!/usr/bin/env bash
# Evaluates this project's own CACL model of Split Fashion-MNIST (5 tasks x 2 classes) on the real test set in seconds (pretrained/README.md).
# Usage: fashionmnist_eval.sh [CHECKPOINT_DIR] [extra flags]; the default checkpoint is pretrained/fashionmnist_cacl.
# Prints each task's accuracy, the average and the model size.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/evaluate_checkpoint.sh"
source "$ROOT/scripts/find_fashion_mnist.sh"
evaluate_checkpoint pretrained/fashionmnist_cacl --model_name Net_SVD --model_type customnet_SVD --dataset FashionMNIST --first_split_size 2 --other_split_size 2 --gpuid -1 -- "$@"
