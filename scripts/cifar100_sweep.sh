#!/usr/bin/env bash
# cifar100_train.sh's runs as one SLURM job array: a job per sparsity weight (0.1, 0.4) and repeat (3), 6 jobs, each
# on one GPU, recorded in sweeps/CNet_CIFAR100_finalmodel/. Extra flags are appended (and win): resources
# (--partition P --time MIN --gpus_per_job N --mem_gb N ...), --cluster local, --sweep_dir DIR, any iBatchLearn.py
# flag. Then ./scripts/sweep.sh --status sweeps/CNet_CIFAR100_finalmodel, and --collect once every job is done.
set -euo pipefail
source "$(dirname "$0")/paper_flags.sh"
exec "$(dirname "$0")/sweep.sh" "${CIFAR100_FLAGS[@]}" --cluster slurm --sweep_dir sweeps/CNet_CIFAR100_finalmodel "$@"
