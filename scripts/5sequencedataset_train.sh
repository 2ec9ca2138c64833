#!/usr/bin/env bash
# The 5-dataset sequence (CIFAR10, notMNIST, MNIST, SVHN, FashionMNIST; 10 classes each), one run.
# The paper's hyper-parameters; extra flags are appended (and win), e.g. --gpuid -1 --schedule 1 --repeat 1.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
exec "$PY" "$ROOT/iBatchLearn.py" -e 0.00003 --model_name Net_SVD --model_type customnet_SVD --dataset multidataset --first_split_size 10 \
  --other_split_size 10 --schedule 120 180 200 --batch_size 64 --sparse_wt 0.1 --benchmark --rand_split_order \
  --grow_network --repeat 1 --exp_name 5sequencedataset "$@"
