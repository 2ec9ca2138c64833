#!/usr/bin/env bash
# Install the project into .venv if needed, then run the whole test suite (extra arguments go to pytest).
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
source "$ROOT/scripts/find_fashion_mnist.sh"   # two tests read the real Fashion-MNIST
cd "$ROOT"
exec "$PY" -m pytest -q tests "$@"
