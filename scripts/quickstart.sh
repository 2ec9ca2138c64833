#!/usr/bin/env bash
# CACL on Split Fashion-MNIST (5 tasks x 2 classes, real data) on the CPU, in a few minutes:
# installs into .venv if needed, finds Fashion-MNIST, trains, and prints each task's accuracy, the average,
# the model size and how much larger five separate dense models would be. Extra flags are passed on.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/find_fashion_mnist.sh"
exec "$PY" "$ROOT/iBatchLearn.py" --dataset FashionMNIST --first_split_size 2 --other_split_size 2 \
  --schedule 1 --repeat 1 --sparse_wt 0.4 -e 0.001 --grow_network --gpuid -1 --exp_name quickstart "$@"
