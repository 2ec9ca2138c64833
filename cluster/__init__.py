"""Paper-scale sweeps on a cluster through submitit: one job per (experiment, repeat) of the driver's sweep
(``python -m cluster.sweep``). submitit is an optional dependency (the ``cluster`` extra): without it, this package
stops its command line with a one-line error."""
import importlib.util
import sys

if importlib.util.find_spec("submitit") is None:
    print("error: cluster sweeps need submitit, which is not installed: pip install submitit (or the project with "
          "its cluster extra)", file=sys.stderr)
    raise SystemExit(2)
