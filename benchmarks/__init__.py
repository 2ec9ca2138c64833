"""Measurements of the project itself: training and evaluation speed against the dense floor, peak memory
(``python -m benchmarks.benchmark``)."""
