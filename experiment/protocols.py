"""How a task sequence is presented to agents: one task after another (the continual-learning protocol), all
tasks at once (``--offline_training``, the upper bound) or one fresh model per task (``--ind_models``).

A protocol given the ``Progress`` of an interrupted run skips what it has done, and calls back ``Hooks`` as it goes.
"""
import logging
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import torch

from agents import NormalNN
from agents.default import EpochReport
from dataloaders import TaskData, TaskLoader
from evaluation.metrics import AccuracyMatrix
from evaluation.task_agnostic import RULES, Matrices, RowWithoutLabel, Tally, add_row
from models.multihead import ALL_TASKS

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """How far a repeat has come: its tasks in training order, the tasks finished (for ``learn_jointly``, 1 once the
    joint task is done), the accuracy matrix measured so far, the model size (MB) after each of its rows, the
    agents' training states and the loggers' states (``Logger.state``: where their outputs stand) at the last
    checkpoint (no agents: the repeat has not started), and the accuracies without the task label so far."""

    task_order: List[str] = field(default_factory=list)
    tasks_done: int = 0
    acc_matrix: AccuracyMatrix = field(default_factory=dict)
    model_sizes: Dict[str, float] = field(default_factory=dict)
    agents: List[dict] = field(default_factory=list)
    loggers: Dict[str, dict] = field(default_factory=dict)
    task_agnostic: Matrices = field(default_factory=dict)
    """Under ``--task_agnostic``, every row's evaluation without the task label, by rule
    (``evaluation.task_agnostic``)."""


@dataclass
class TaskStream:
    """The tasks in training order, with their training data and the data each is evaluated on."""

    names: List[str]
    train: Mapping[str, TaskData]
    evaluation: Mapping[str, TaskData]
    batch_size: int
    device: torch.device
    task_agnostic: bool = False
    """Whether each evaluation also scores the samples without their task label (``--task_agnostic``)."""

    def train_loader(self, *names: str) -> TaskLoader:
        return TaskLoader([self.train[name] for name in names], self.batch_size, shuffle=True, device=self.device)

    def eval_loader(self, name: str) -> TaskLoader:
        return TaskLoader(self.evaluation[name], self.batch_size, shuffle=False, device=self.device)

    def accuracies(self, progress: Progress, row: str, learnt: Sequence[Tuple[NormalNN, str]],
                   names: Sequence[str]) -> Dict[str, float]:
        """``{task: accuracy %}`` of each of ``names`` with its task label, through its agent in ``learnt`` (``(agent,
        task)`` of every task learnt, in training order; with ``--ind_models`` each task's own model). Under
        ``task_agnostic`` every task of ``learnt`` is also scored without its label (``evaluate_without_label``),
        into ``progress.task_agnostic``'s row ``row``, and the accuracies with the label come from the same
        outputs."""
        if not self.task_agnostic:
            agents = {task: agent for agent, task in learnt}
            return {name: agents[name].evaluate(self.eval_loader(name)) for name in names}
        aware, without = self.evaluate_without_label(learnt)
        add_row(progress.task_agnostic, row, without)
        return {name: aware[name] for name in names}

    @torch.no_grad()
    def evaluate_without_label(self, learnt: Sequence[Tuple[NormalNN, str]]) -> Tuple[Dict[str, float],
                                                                                      RowWithoutLabel]:
        """Each task of ``learnt`` (``(agent, task)`` in training order) scored with and without its label: its
        samples through the network and head of every task of ``learnt`` (``NormalNN.task_outputs``: each agent's
        networks built once, for all the tasks evaluated), counted by ``evaluation.task_agnostic.Tally``. Returns
        ``({task: accuracy % with the label}, {rule: {"accuracy": {task: %}, "task_id": {task: %}}})``."""
        order = [task for _, task in learnt]
        scorers = [agent.task_outputs([task for _, task in tasks]) for agent, tasks in groupby(learnt, itemgetter(0))]
        aware: Dict[str, float] = {}
        without: RowWithoutLabel = {rule: {"accuracy": {}, "task_id": {}} for rule in RULES}
        for own, name in enumerate(order):
            tally = Tally(own)
            for inputs, targets, _ in self.eval_loader(name):
                tally.add([logits for outputs in scorers for logits in outputs(inputs)], targets)
            aware[name], by_rule = tally.percentages()
            for rule, kinds in by_rule.items():
                for kind, value in kinds.items():
                    without[rule][kind][name] = value
        return aware, without


class Hooks:
    """What a protocol calls back; each does nothing here."""

    def before_task(self, name: str) -> None:
        """Before a task of ``learn_sequentially`` trains (twice for a task resumed in its middle)."""

    def after_epoch(self, report: EpochReport) -> None:
        """After every epoch of every task."""

    def after_task(self, row: str, step: int, accuracies: Mapping[str, float]) -> None:
        """After the ``step``-th row of the accuracy matrix, ``row`` (a task, or ``All`` after joint training), was
        trained and evaluated (``accuracies``), with the progress already updated."""


def learn_sequentially(agent: NormalNN, stream: TaskStream, progress: Progress, hooks: Hooks,
                       only_current: bool = False) -> AccuracyMatrix:
    """Train task after task; after each, evaluate every task seen so far (only the new one with ``only_current``)."""
    for position in range(progress.tasks_done, len(stream.names)):
        name = stream.names[position]
        log.info("task %s (%d of %d)", name, position + 1, len(stream.names))
        hooks.before_task(name)
        agent.learn_task(name, stream.train_loader(name), on_epoch=hooks.after_epoch)
        evaluated = [name] if only_current else stream.names[:position + 1]
        learnt = [(agent, task) for task in stream.names[:position + 1]]
        progress.acc_matrix[name] = stream.accuracies(progress, name, learnt, evaluated)
        progress.model_sizes[name] = agent.model_size_mb()
        progress.tasks_done = position + 1
        hooks.after_task(name, position + 1, progress.acc_matrix[name])
    return progress.acc_matrix


def learn_jointly(agent: NormalNN, stream: TaskStream, progress: Progress, hooks: Hooks) -> AccuracyMatrix:
    """Train on the union of all tasks at once (each sample through its own task's head), then evaluate each task."""
    if progress.tasks_done == 0:
        heads = sorted({agent.head_of(name) for name in stream.names})
        agent.learn_task(ALL_TASKS, stream.train_loader(*stream.names), heads=heads, on_epoch=hooks.after_epoch)
        learnt = [(agent, task) for task in stream.names]
        progress.acc_matrix[ALL_TASKS] = stream.accuracies(progress, ALL_TASKS, learnt, stream.names)
        progress.model_sizes[ALL_TASKS] = agent.model_size_mb()
        progress.tasks_done = 1
        hooks.after_task(ALL_TASKS, 1, progress.acc_matrix[ALL_TASKS])
    return progress.acc_matrix


def learn_separately(new_agent: Callable[[str], NormalNN], stream: TaskStream, progress: Progress, hooks: Hooks,
                     agents: List[NormalNN]) -> AccuracyMatrix:
    """A fresh model per task (``new_agent(task)``), each trained and evaluated on its own task only (without the
    task label, every task learnt so far is scored by every model so far).

    ``agents`` holds the models of the tasks already begun, in order (an interrupted run's); each new model is
    appended to it before it trains.
    """
    acc_matrix = progress.acc_matrix
    for position in range(progress.tasks_done, len(stream.names)):
        name = stream.names[position]
        log.info("separate model for task %s (%d of %d)", name, position + 1, len(stream.names))
        if len(agents) == position:
            agents.append(new_agent(name))
        agents[position].learn_task(name, stream.train_loader(name), on_epoch=hooks.after_epoch)
        learnt = list(zip(agents, stream.names[:position + 1]))
        own_accuracy = stream.accuracies(progress, name, learnt, [name])[name]
        acc_matrix[name] = {seen: acc_matrix[seen][seen] for seen in stream.names[:position]}
        acc_matrix[name][name] = own_accuracy
        progress.model_sizes[name] = sum(agent.model_size_mb() for agent in agents)
        progress.tasks_done = position + 1
        hooks.after_task(name, position + 1, acc_matrix[name])
    return acc_matrix
