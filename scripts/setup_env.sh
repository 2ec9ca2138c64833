# Sourced by the other scripts: sets ROOT (the repository) and PY (the Python that runs the project). By default
# PY is .venv's, made on first use with requirements.txt installed and the project itself installed in editable
# mode (its console commands cacl, cacl-sweep, cacl-export and cacl-report in .venv/bin); CACL_PYTHON=/path/to/python
# uses another Python as it is (nothing is installed into it).
# The working directory is left alone: outputs (results/, saves/, runs/) go where the script is called from.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${CACL_PYTHON:-}" ]; then
  PY=$CACL_PYTHON
else
  if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$ROOT/.venv"
  fi
  if [ ! -f "$ROOT/.venv/.installed" ] || [ "$ROOT/requirements.txt" -nt "$ROOT/.venv/.installed" ] \
      || [ "$ROOT/pyproject.toml" -nt "$ROOT/.venv/.installed" ]; then
    echo "installing requirements and the project into .venv (first run: a few minutes; log: .venv/install.log)" >&2
    if ! { "$ROOT/.venv/bin/python" -m pip install --quiet --upgrade pip \
           && "$ROOT/.venv/bin/python" -m pip install --quiet -r "$ROOT/requirements.txt" \
           && "$ROOT/.venv/bin/python" -m pip install --quiet --no-deps -e "$ROOT"; } >"$ROOT/.venv/install.log" 2>&1
    then
      cat "$ROOT/.venv/install.log" >&2
      echo "error: installing into .venv failed (the log above is .venv/install.log)" >&2
      exit 1
    fi
    touch "$ROOT/.venv/.installed"
  fi
  PY="$ROOT/.venv/bin/python"
fi
