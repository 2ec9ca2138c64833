"""Experiments from the driver's flags: tasks, models and agents built from them, runs under the protocols, the
sweep over sparsity weights and repeats with its checkpoints, the same sweep as cluster jobs, saved models and their
evaluation, the searches, and the benchmark."""
