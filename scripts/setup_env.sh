# Sourced by the other scripts: make .venv (Python 3.9+) with requirements.txt installed, once.
# PYTHON picks the interpreter (default python3); a stamp file skips the install when nothing changed.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
  echo "installing requirements into .venv (first run: a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  .venv/bin/python -m pip install --quiet -r requirements.txt >&2
  touch .venv/.installed
fi
