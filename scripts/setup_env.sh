# Sourced by the other scripts: sets ROOT (the repository) and PY (the Python that runs the project). By default
# PY is .venv's, made with requirements.txt installed on first use; CACL_PYTHON=/path/to/python uses another.
# The working directory is left alone: outputs (results/, saves/, runs/) go where the script is called from.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${CACL_PYTHON:-}" ]; then
  PY=$CACL_PYTHON
else
  if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$ROOT/.venv"
  fi
  if [ ! -f "$ROOT/.venv/.installed" ] || [ "$ROOT/requirements.txt" -nt "$ROOT/.venv/.installed" ]; then
    echo "installing requirements into .venv (first run: a few minutes)" >&2
    "$ROOT/.venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$ROOT/.venv/bin/python" -m pip install --quiet -r "$ROOT/requirements.txt" >&2
    touch "$ROOT/.venv/.installed"
  fi
  PY="$ROOT/.venv/bin/python"
fi
