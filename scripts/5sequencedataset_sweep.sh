#!/usr/bin/env bash
# 5sequencedataset_train.sh's run as a SLURM job (one repeat, as published; --repeat 3 makes it an array of 3), on
# one GPU, recorded in sweeps/5sequencedataset/. Extra flags are appended (and win): resources (--partition P --time
# MIN --gpus_per_job N --mem_gb N ...), --cluster local, --sweep_dir DIR, any iBatchLearn.py flag. Then
# ./scripts/sweep.sh --status sweeps/5sequencedataset, and --collect once the job is done.
set -euo pipefail
source "$(dirname "$0")/paper_flags.sh"
exec "$(dirname "$0")/sweep.sh" "${FIVE_DATASETS_FLAGS[@]}" --cluster slurm --sweep_dir sweeps/5sequencedataset "$@"
