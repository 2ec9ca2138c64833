"""How a task sequence is presented to agents: one task after another (the continual-learning protocol), all
tasks at once (``--offline_training``, the upper bound) or one fresh model per task (``--ind_models``)."""
import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch

from agents.default import NormalNN
from dataloaders import TaskData, TaskLoader

log = logging.getLogger(__name__)

AccuracyMatrix = Dict[str, Dict[str, float]]
JOINT_TASK = "All"


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
                       before_task: Optional[Callable[[str], None]] = None) -> AccuracyMatrix:
    """Train task after task; after each, evaluate every task seen so far (only the new one with ``only_current``)."""
    acc_matrix: AccuracyMatrix = {}
    for position, name in enumerate(stream.names):
        log.info("task %s (%d of %d)", name, position + 1, len(stream.names))
        if before_task is not None:
            before_task(name)
        agent.learn_task(name, stream.train_loader(name))
        evaluated = [name] if only_current else stream.names[:position + 1]
        acc_matrix[name] = {seen: agent.evaluate(stream.eval_loader(seen)) for seen in evaluated}
        log_accuracies(writer, f"task {name}", position + 1, acc_matrix[name])
    return acc_matrix


def learn_jointly(agent: NormalNN, stream: TaskStream, writer=None) -> AccuracyMatrix:
    """Train on the union of all tasks at once (each sample through its own task's head), then evaluate each task."""
    heads = sorted({agent.head_of(name) for name in stream.names})
    agent.learn_task(JOINT_TASK, stream.train_loader(*stream.names), heads=heads)
    accuracies = {name: agent.evaluate(stream.eval_loader(name)) for name in stream.names}
    log_accuracies(writer, "joint training", 1, accuracies)
    return {JOINT_TASK: accuracies}


def learn_separately(make_agent: Callable[[], NormalNN], stream: TaskStream,
                     writer=None) -> Tuple[AccuracyMatrix, Dict[str, NormalNN]]:
    """A fresh model per task, each trained and evaluated on its own task only."""
    agents: Dict[str, NormalNN] = {}
    own_accuracy: Dict[str, float] = {}
    acc_matrix: AccuracyMatrix = {}
    for position, name in enumerate(stream.names):
        log.info("separate model for task %s (%d of %d)", name, position + 1, len(stream.names))
        agents[name] = make_agent()
        agents[name].learn_task(name, stream.train_loader(name))
        own_accuracy[name] = agents[name].evaluate(stream.eval_loader(name))
        acc_matrix[name] = {seen: own_accuracy[seen] for seen in stream.names[:position + 1]}
        log_accuracies(writer, f"task {name}", position + 1, acc_matrix[name])
    return acc_matrix, agents
