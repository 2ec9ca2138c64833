#!/usr/bin/env bash
# python -m cluster.sweep from anywhere: submit a sweep (the iBatchLearn.py flags, --cluster slurm|local|debug,
# --sweep_dir DIR, resources), or --status DIR, or --collect DIR. See README, "On a cluster".
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m cluster.sweep "$@"
