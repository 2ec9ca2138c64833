"""Measurements of the project itself: training and evaluation speed against the dense floor, peak memory
(``python -m benchmarks.benchmark``), and the GPU check (``scripts/gpu_check.sh``) with the host-device syncs it
counts."""
