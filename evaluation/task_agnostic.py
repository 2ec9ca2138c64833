"""Accuracy without the task label (task-agnostic), beside the task-aware accuracy every result reports.

Task-aware, a test sample is scored by its own task's network and head: the reader is told which task it belongs
to. Task-agnostic, it is scored by the network and head of every task learnt so far (in training order), and its
predicted class is the best over all of them, under one of three rules:

- ``logits``: FACIL's default (``mmasana/FACIL``, ``src/approach/incremental_learning.py``,
  ``Inc_Learning_Appr.calculate_metrics``, task-agnostic part): the argmax of the concatenation of every head's raw
  logits;
- ``log_softmax``: FACIL's ``--multi-softmax`` (the same function): the argmax of the concatenation of each head's
  log-softmax;
- ``entropy``: the task whose own softmax has the lowest entropy, then its head's argmax: task-identity prediction by
  predictive entropy, as von Oswald et al. (ICLR 2020, "Continual learning with hypernetworks", HNET+ENT) and
  Wortsman et al. (NeurIPS 2020, "Supermasks in Superposition") infer the task, and as Kim et al. (NeurIPS 2022,
  "A theoretical study on solving continual learning") factor class-incremental accuracy into within-task
  prediction × task-identity prediction.

A sample is right when the rule picks its own task and, in that task's head, its class; ``task_id`` counts how often
the rule picks its own task. Ties go to the earlier task (and class), as ``torch.argmax`` over FACIL's concatenation
gives them.
"""
import math
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F

from evaluation.metrics import AccuracyMatrix, average_accuracy, bwt, final_accuracies, forgetting
from utils.errors import UserError

Prediction = Tuple[torch.Tensor, torch.Tensor]
"""``(task, class)`` per sample: the index of the chosen task (in training order) and the class in its head."""

TABLE_RULE = "logits"
"""The rule of the printed table and the report's main columns: FACIL's default."""

RowWithoutLabel = Dict[str, Dict[str, Dict[str, float]]]
"""One evaluation without the label: ``{rule: {"accuracy": {task: %}, "task_id": {task: %}}}``."""

Matrices = Dict[str, Dict[str, AccuracyMatrix]]
"""A run's evaluations without the label: ``{rule: {"acc_matrix": ..., "task_id_matrix": ...}}``, each matrix shaped
as the run's ``acc_matrix`` (its rows, the tasks evaluated after each)."""


def stacked(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Every task's logits (N × classes of task t each, in training order) as one float32 tensor T × N × C, C the
    most classes of a head, a head with fewer padded with −∞ (a class no rule picks): the rules below then run on all
    the tasks at once."""
    width = max(z.shape[1] for z in logits)
    return torch.stack([F.pad(z.float(), (0, width - z.shape[1]), value=-math.inf) for z in logits])


def chosen(scores: torch.Tensor, task: torch.Tensor) -> Prediction:
    """``(task, argmax of the chosen task's scores)`` for each sample."""
    return task, scores.argmax(2).gather(0, task.unsqueeze(0)).squeeze(0)


def by_logits(scores: torch.Tensor) -> Prediction:
    """FACIL's default rule: ``argmax [z_1 | ... | z_T]`` over the raw logits ``z_t`` of every task's head
    (``calculate_metrics``: ``torch.cat(outputs, dim=1).argmax(1)``), read as a task and a class in its head: the
    first task holding the largest logit, then its first class of that logit (what the concatenation's argmax
    points at)."""
    return chosen(scores, scores.amax(2).argmax(0))


def by_log_softmax(scores: torch.Tensor) -> Prediction:
    """FACIL's ``--multi-softmax`` rule: ``argmax [log softmax(z_1) | ... | log softmax(z_T)]``, each head normalised
    on its own (``calculate_metrics``: ``log_softmax(output, dim=1)`` of each head, concatenated), read as
    ``by_logits`` reads it."""
    return by_logits(F.log_softmax(scores, dim=2))


def by_entropy(scores: torch.Tensor) -> Prediction:
    """Task identity by predictive entropy: the task ``argmin_t H(softmax(z_t))``, with
    ``H(p) = −Σ_c p_c log p_c`` (a padded class adds 0), then ``argmax z_t`` of that task's head (von Oswald et al.
    2020, HNET+ENT)."""
    products = F.softmax(scores, dim=2) * F.log_softmax(scores, dim=2)  # a padded class: 0 · (−∞), not a number
    entropies = -products.nan_to_num(nan=0.0).sum(2)
    return chosen(scores, entropies.argmin(0))


RULES: Dict[str, Callable[[torch.Tensor], Prediction]] = {
    "logits": by_logits, "log_softmax": by_log_softmax, "entropy": by_entropy}
"""The rules, by the name the results give them; each takes the tasks' ``stacked`` logits."""


class Tally:
    """The counts of one task's evaluation with and without its label, kept on the device and read once
    (``percentages``): ``own`` is the task's index among the tasks whose logits ``add`` is given."""

    def __init__(self, own: int):
        self.own = own
        self.seen = 0
        self.counts: Dict[str, torch.Tensor] = {}

    def count(self, name: str, hits: torch.Tensor) -> None:
        self.counts[name] = self.counts.get(name, 0) + hits.sum()

    def add(self, logits: Sequence[torch.Tensor], targets: torch.Tensor) -> None:
        """A batch: ``logits`` of every task learnt (in training order), ``targets`` the classes in the own task."""
        self.count("task_aware", logits[self.own].argmax(1) == targets)
        scores = stacked(logits)
        for rule, predict in RULES.items():
            task, predicted = predict(scores)
            own_task = task == self.own
            self.count(f"{rule}/task_id", own_task)
            self.count(f"{rule}/accuracy", own_task & (predicted == targets))
        self.seen += len(targets)

    def percentages(self) -> Tuple[float, Dict[str, Dict[str, float]]]:
        """``(task-aware accuracy %, {rule: {"accuracy": %, "task_id": %}})``, read from the device at once."""
        if self.seen == 0:
            raise UserError("the evaluation set is empty")
        names = list(self.counts)
        values = dict(zip(names, torch.stack([self.counts[name] for name in names]).tolist()))
        percent = {name: 100.0 * int(value) / self.seen for name, value in values.items()}
        return percent["task_aware"], {rule: {kind: percent[f"{rule}/{kind}"] for kind in ("accuracy", "task_id")}
                                       for rule in RULES}


def add_row(matrices: Matrices, row: str, measured: RowWithoutLabel) -> None:
    """Row ``row`` (the task just learnt, or ``All``) of every rule's matrices, from one evaluation without the
    label."""
    for rule, kinds in measured.items():
        entry = matrices.setdefault(rule, {"acc_matrix": {}, "task_id_matrix": {}})
        entry["acc_matrix"][row] = dict(kinds["accuracy"])
        entry["task_id_matrix"][row] = dict(kinds["task_id"])


def row_of(matrices: Matrices, row: str) -> RowWithoutLabel:
    """The evaluation without the label of row ``row`` (the inverse of ``add_row``)."""
    return {rule: {"accuracy": entry["acc_matrix"][row], "task_id": entry["task_id_matrix"][row]}
            for rule, entry in matrices.items()}


def task_agnostic_record(matrices: Matrices) -> dict:
    """The results' ``task_agnostic`` key: per rule its ``acc_matrix``, ``avg_acc`` (the average of each task's
    latest accuracy, ``final_accuracies``), ``bwt`` and ``forgetting`` (``evaluation.metrics``, of that matrix),
    ``task_id_acc`` (the same average of how often the rule picked the sample's own task) and ``task_id_matrix``
    (that, after each task)."""
    record = {}
    for rule, entry in matrices.items():
        accuracy, task_id = entry["acc_matrix"], entry["task_id_matrix"]
        record[rule] = {"acc_matrix": accuracy, "avg_acc": average_accuracy(final_accuracies(accuracy)),
                        "bwt": bwt(accuracy), "forgetting": forgetting(accuracy),
                        "task_id_acc": average_accuracy(final_accuracies(task_id)), "task_id_matrix": task_id}
    return record
