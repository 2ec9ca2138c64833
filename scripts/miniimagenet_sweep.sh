#!/usr/bin/env bash
# miniimagenet_train.sh's runs as one SLURM job array: a job per repeat (3) of sparsity weight 0.1, each on one GPU,
# recorded in sweeps/miniImageNet_final/. Extra flags are appended (and win): resources (--partition P --time MIN
# --gpus_per_job N --mem_gb N ...), --cluster local, --sweep_dir DIR, any iBatchLearn.py flag. Then
# ./scripts/sweep.sh --status sweeps/miniImageNet_final, and --collect once every job is done.
set -euo pipefail
source "$(dirname "$0")/paper_flags.sh"
exec "$(dirname "$0")/sweep.sh" "${MINIIMAGENET_FLAGS[@]}" --cluster slurm --sweep_dir sweeps/miniImageNet_final "$@"
