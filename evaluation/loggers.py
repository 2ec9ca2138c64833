"""Loggers: each turns the numbers a run produces (loss terms every ``--print_freq`` steps, accuracies after each
task) into one kind of output. They only format; nothing here trains or evaluates."""
import logging
from typing import Mapping, Sequence

from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger("training")


class Logger:
    """Does nothing; subclasses write somewhere."""

    def log_losses(self, task: str, epoch: int, step: int, terms: Mapping[str, float]) -> None:
        """Loss terms at optimizer step ``step`` (global), in epoch ``epoch`` (1-based) of ``task``."""

    def log_accuracies(self, label: str, step: int, accuracies: Mapping[str, float]) -> None:
        """Accuracy (%) of each task evaluated after ``label`` (e.g. "task 3"), the ``step``-th evaluation."""

    def close(self) -> None:
        pass


class TextLogger(Logger):
    """Lines through ``logging`` (the driver prints them on stderr)."""

    def log_losses(self, task: str, epoch: int, step: int, terms: Mapping[str, float]) -> None:
        log.info("task %s epoch %d step %d: %s", task, epoch, step,
                 ", ".join(f"{name} {value:.4f}" for name, value in terms.items()))

    def log_accuracies(self, label: str, step: int, accuracies: Mapping[str, float]) -> None:
        log.info("after %s: %s", label, ", ".join(f"{task} {acc:.2f}" for task, acc in accuracies.items()))


class TensorBoardLogger(Logger):
    """Scalars ``train/<term>`` by optimizer step and ``accuracy/task_<name>`` by task, in ``directory``."""

    def __init__(self, directory: str):
        self.writer = SummaryWriter(directory)

    def log_losses(self, task: str, epoch: int, step: int, terms: Mapping[str, float]) -> None:
        for name, value in terms.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def log_accuracies(self, label: str, step: int, accuracies: Mapping[str, float]) -> None:
        for task, accuracy in accuracies.items():
            self.writer.add_scalar(f"accuracy/task_{task}", accuracy, step)

    def close(self) -> None:
        self.writer.close()


class Loggers(Logger):
    """Several loggers as one."""

    def __init__(self, loggers: Sequence[Logger]):
        self.loggers = list(loggers)

    def log_losses(self, task: str, epoch: int, step: int, terms: Mapping[str, float]) -> None:
        for logger in self.loggers:
            logger.log_losses(task, epoch, step, terms)

    def log_accuracies(self, label: str, step: int, accuracies: Mapping[str, float]) -> None:
        for logger in self.loggers:
            logger.log_accuracies(label, step, accuracies)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
