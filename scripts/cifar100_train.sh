#!/usr/bin/env bash
# 20-split CIFAR-100 (5 classes a task), Net_SVD, sparsity weights 0.1 and 0.4, 3 runs each.
# The paper's hyper-parameters; extra flags are appended (and win), e.g. --gpuid -1 --schedule 1 --repeat 1.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
exec "$PY" "$ROOT/iBatchLearn.py" -e 0.00003 --model_name Net_SVD --model_type customnet_SVD --first_split_size 5 --other_split_size 5 --train_aug \
  --schedule 120 180 200 --batch_size 64 --dataset CIFAR100 --force_out_dim 0 --sparse_wt 0.1 0.4 --benchmark \
  --rand_split_order --grow_network --repeat 3 --exp_name CNet_CIFAR100_finalmodel "$@"
