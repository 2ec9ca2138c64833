"""The accuracy matrix of a run and the numbers computed from it."""
import statistics
from typing import Dict

AccuracyMatrix = Dict[str, Dict[str, float]]
"""``{task trained last: {task evaluated: accuracy %}}``, rows in training order."""


def final_accuracies(acc_matrix: AccuracyMatrix) -> Dict[str, float]:
    """Every task's latest accuracy, in the order tasks were first evaluated: the last row when it holds every task
    (sequential training), each task's own row under ``--single_tasks`` (published: each task evaluated right after
    it was trained)."""
    final: Dict[str, float] = {}
    for row in acc_matrix.values():
        final.update(row)
    return final


def average_accuracy(accuracies: Dict[str, float]) -> float:
    """Mean of the tasks' accuracies (0 for none)."""
    return statistics.fmean(accuracies.values()) if accuracies else 0.0
