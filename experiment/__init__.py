"""Experiments from a checked configuration (``config``: the flags as typed objects): tasks, models and agents built
from it, runs under the protocols, the sweep over the method's swept flag and the repeats with its checkpoints,
saved models and their evaluation, and the searches."""
