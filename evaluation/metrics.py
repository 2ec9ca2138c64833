"""The accuracy matrix of a run and the numbers computed from it."""
import statistics
from typing import Dict

AccuracyMatrix = Dict[str, Dict[str, float]]
"""``{task trained last: {task evaluated: accuracy %}}``, rows in training order."""


def final_accuracies(acc_matrix: AccuracyMatrix) -> Dict[str, float]:
    """The last row: every task's accuracy after the last task ({} before any task)."""
    return dict(acc_matrix[list(acc_matrix)[-1]]) if acc_matrix else {}


def average_accuracy(accuracies: Dict[str, float]) -> float:
    """Mean of the tasks' accuracies (0 for none)."""
    return statistics.fmean(accuracies.values()) if accuracies else 0.0
