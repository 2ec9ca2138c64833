"""How a task sequence is presented to agents: one task after another (the continual-learning protocol), all
tasks at once (``--offline_training``, the upper bound) or one fresh model per task (``--ind_models``)."""
import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch

from agents.default import NormalNN
from dataloaders import TaskData, TaskLoader

log = logging.getLogger(__name__)

AccuracyMatrix = Dict[str, Dict[str, float]]
JOINT_TASK = "All"


@dataclass
class Progress:
    """How far a run has come: the tasks finished (separate models, with ``learn_separately``) and the accuracy
    matrix measured so far. A protocol given the progress of an interrupted run skips what it has done."""

    tasks_done: int = 0
    acc_matrix: AccuracyMatrix = field(default_factory=dict)


@dataclass
class TaskStream:
    """The tasks in training order, with their training data and the data each is evaluated on."""

    names: List[str]
    train: Mapping[str, TaskData]
    evaluation: Mapping[str, TaskData]
    batch_size: int
    device: torch.device

    def train_loader(self, *names: str) -> TaskLoader:
        return TaskLoader([self.train[name] for name in names], self.batch_size, shuffle=True, device=self.device)

    def eval_loader(self, name: str) -> TaskLoader:
        return TaskLoader(self.evaluation[name], self.batch_size, shuffle=False, device=self.device)


def log_accuracies(writer, trained: str, step: int, accuracies: Mapping[str, float]) -> None:
    log.info("after %s: %s", trained, ", ".join(f"{task} {acc:.2f}" for task, acc in accuracies.items()))
    if writer is not None:
        for task, accuracy in accuracies.items():
            writer.add_scalar(f"accuracy/task_{task}", accuracy, step)


def learn_sequentially(agent: NormalNN, stream: TaskStream, writer=None, only_current: bool = False,
                       before_task: Optional[Callable[[str], None]] = None, progress: Optional[Progress] = None,
                       after_task: Optional[Callable[[], None]] = None) -> AccuracyMatrix:
    """Train task after task; after each, evaluate every task seen so far (only the new one with ``only_current``).

    ``before_task(name)`` runs before each task's training (it may run twice for a task resumed in its middle);
    ``after_task()`` after each task's evaluation, with ``progress`` updated.
    """
    progress = progress if progress is not None else Progress()
    for position in range(progress.tasks_done, len(stream.names)):
        name = stream.names[position]
        log.info("task %s (%d of %d)", name, position + 1, len(stream.names))
        if before_task is not None:
            before_task(name)
        agent.learn_task(name, stream.train_loader(name))
        evaluated = [name] if only_current else stream.names[:position + 1]
        progress.acc_matrix[name] = {seen: agent.evaluate(stream.eval_loader(seen)) for seen in evaluated}
        log_accuracies(writer, f"task {name}", position + 1, progress.acc_matrix[name])
        progress.tasks_done = position + 1
        if after_task is not None:
            after_task()
    return progress.acc_matrix


def learn_jointly(agent: NormalNN, stream: TaskStream, writer=None, progress: Optional[Progress] = None,
                  after_task: Optional[Callable[[], None]] = None) -> AccuracyMatrix:
    """Train on the union of all tasks at once (each sample through its own task's head), then evaluate each task."""
    progress = progress if progress is not None else Progress()
    if progress.tasks_done == 0:
        heads = sorted({agent.head_of(name) for name in stream.names})
        agent.learn_task(JOINT_TASK, stream.train_loader(*stream.names), heads=heads)
        progress.acc_matrix[JOINT_TASK] = {name: agent.evaluate(stream.eval_loader(name)) for name in stream.names}
        log_accuracies(writer, "joint training", 1, progress.acc_matrix[JOINT_TASK])
        progress.tasks_done = 1
        if after_task is not None:
            after_task()
    return progress.acc_matrix


def learn_separately(make_agent: Callable[[], NormalNN], stream: TaskStream, writer=None,
                     progress: Optional[Progress] = None, agents: Optional[List[NormalNN]] = None,
                     after_task: Optional[Callable[[], None]] = None) -> Tuple[AccuracyMatrix, List[NormalNN]]:
    """A fresh model per task, each trained and evaluated on its own task only.

    ``agents`` holds the models of the tasks already begun, in order (an interrupted run's); each new model is
    appended to it before it trains.
    """
    progress = progress if progress is not None else Progress()
    agents = agents if agents is not None else []
    acc_matrix = progress.acc_matrix
    for position in range(progress.tasks_done, len(stream.names)):
        name = stream.names[position]
        log.info("separate model for task %s (%d of %d)", name, position + 1, len(stream.names))
        if len(agents) == position:
            agents.append(make_agent())
        agents[position].learn_task(name, stream.train_loader(name))
        own_accuracy = agents[position].evaluate(stream.eval_loader(name))
        acc_matrix[name] = {seen: acc_matrix[seen][seen] for seen in stream.names[:position]}
        acc_matrix[name][name] = own_accuracy
        log_accuracies(writer, f"task {name}", position + 1, acc_matrix[name])
        progress.tasks_done = position + 1
        if after_task is not None:
            after_task()
    return acc_matrix, agents
