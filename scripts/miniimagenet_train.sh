#!/usr/bin/env bash
# 20-split miniImageNet (5 classes a task, 84x84), Net_SVD, sparsity weight 0.1, 3 runs.
# The paper's hyper-parameters; extra flags are appended (and win), e.g. --gpuid -1 --schedule 1 --repeat 1.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
exec "$PY" "$ROOT/iBatchLearn.py" -e 0.00003 --model_name Net_SVD --model_type customnet_SVD --first_split_size 5 --other_split_size 5 --train_aug \
  --schedule 150 180 200 --batch_size 64 --dataset miniImageNet --force_out_dim 0 --sparse_wt 0.1 --benchmark \
  --rand_split_order --grow_network --repeat 3 --exp_name miniImageNet_final "$@"
