#!/usr/bin/env bash
# Install the project into .venv if needed, then measure training and evaluation speed against the dense floor and a
# whole run's peak memory: prints one table and writes results/benchmark.json (under the working directory).
# Flags go to experiment/benchmark.py: --device cpu|cuda, --quick (a smoke test), --rounds N, --threads N, --no_memory,
# --output PATH.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m benchmarks.benchmark "$@"
