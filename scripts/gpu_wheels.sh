#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels of the packages the project needs that a GPU machine without a package
# registry may lack: quadprog (GEM) and submitit (cluster.sweep), with cloudpickle, which submitit needs (its other
# requirement, typing_extensions, comes with torch). Built for CPython 3.12 on x86-64 Linux, the GPU machine's; pass
# another version as the first argument (e.g. 3.11). Carry .whl/ there: scripts/gpu_check.sh installs them from it
# when they are not importable. The versions are the ones this project is tested with.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON_VERSION="${1:-3.12}"
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
mkdir -p "$ROOT/.whl"
# quadprog is compiled: a wheel for that Python and platform; the others are pure Python (py3-none-any), which pip
# accepts under the same platform and version constraints
"${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" \
  --implementation cp "${PLATFORMS[@]}" -d "$ROOT/.whl" quadprog==0.1.14 submitit==1.5.4 cloudpickle==3.1.3
for wheel in "$ROOT"/.whl/*.whl; do
  echo "$(basename "$wheel"): $(unzip -p "$wheel" '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' \
    | sed 's/Requires-Dist: //' | paste -sd, - | sed 's/^$/no requirements/')"
done
