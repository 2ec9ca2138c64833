"""The accuracy matrix of a run and the numbers computed from it."""
import statistics
from typing import Dict, List, Optional

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


def measurements(acc_matrix: AccuracyMatrix) -> Dict[str, List[float]]:
    """Each earlier task's accuracies, from right after it was learnt (its own row) to the last row that holds it.

    The earlier tasks are the rows' tasks but the last row's (for joint training, whose one row is no task: none).
    """
    rows = list(acc_matrix)
    return {task: [acc_matrix[row][task] for row in rows[rows.index(task):] if task in acc_matrix[row]]
            for task in rows[:-1] if task in acc_matrix[task]}


def bwt(acc_matrix: AccuracyMatrix) -> Optional[float]:
    """Backward transfer: ``mean over earlier tasks t of (a_last,t − a_t,t)``, the final accuracy minus the accuracy
    right after learning the task (negative: forgetting). None without an earlier task (one task, joint training).

    Over what the matrix holds: under ``--single_tasks`` a task's last accuracy is the one right after learning it
    (0 for every task); under ``--ind_models`` each task keeps its own model's accuracy (0 as well).
    """
    tasks = measurements(acc_matrix)
    return statistics.fmean(accs[-1] - accs[0] for accs in tasks.values()) if tasks else None


def forgetting(acc_matrix: AccuracyMatrix) -> Optional[float]:
    """Forgetting: ``mean over earlier tasks t of (max_{l < last} a_l,t − a_last,t)``, the best accuracy the task had
    before the final one minus the final one (Chaudhry et al. 2018). None without an earlier task.

    Over what the matrix holds: a task measured once (``--single_tasks``) has no earlier accuracy and counts 0.
    """
    tasks = measurements(acc_matrix)
    return statistics.fmean(max(accs[:-1] or accs) - accs[-1] for accs in tasks.values()) if tasks else None
