# Sourced by the *_eval.sh scripts: `evaluate_checkpoint DEFAULT_FOLDER FLAGS... -- "$@"` evaluates a saved CACL
# model with --loadmodel. A first user argument that is not a flag replaces the default folder (a path, or a folder
# under the repository such as pretrained/NAME); the other user arguments are appended to FLAGS.
evaluate_checkpoint() {
  local checkpoint=$1 flags=()
  shift
  while [ "$1" != "--" ]; do flags+=("$1"); shift; done
  shift
  if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then checkpoint=$1; shift; fi
  if [ ! -d "$checkpoint" ] && [ -d "$ROOT/$checkpoint" ]; then checkpoint="$ROOT/$checkpoint"; fi
  exec "$PY" "$ROOT/iBatchLearn.py" --loadmodel "$checkpoint" "${flags[@]}" "$@"
}
