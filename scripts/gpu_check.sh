#!/usr/bin/env bash
# The GPU check: what needs a real GPU, in one command (at most ~8 min on one GPU, budget 450 s): the CUDA tests, the
# host-device syncs per training step, every method's captured step against its eager one (--cuda_graph),
# benchmark.sh plain / --amp / --cuda_graph / --compile, a 20-task CIFAR-100-shaped run on the GPU and on the CPU
# compared, peak GPU memory, the device and versions. Writes results/gpu_check.json (--out PATH)
# and prints a table; exit status 1 when a step did not pass. --device cpu rehearses it on the CPU, --quick smallest.
# On a machine without a package registry, the packages the project needs and Python lacks (quadprog, submitit) are
# installed from .whl/ (made by scripts/gpu_wheels.sh, carried along) into a temporary folder; nothing else is
# installed (run it with CACL_PYTHON=python3 where there is no .venv).
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
if ! "$PY" -c "import quadprog, submitit" 2>/dev/null && [ -d "$ROOT/.whl" ]; then
  SITE="$(mktemp -d)"
  echo "installing the wheels of $ROOT/.whl into $SITE" >&2
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" "$ROOT"/.whl/*.whl >&2
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m benchmarks.gpu_check "$@"
