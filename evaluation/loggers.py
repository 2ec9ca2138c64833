"""Loggers: each turns the numbers a run produces (loss terms every ``--print_freq`` steps, accuracies after each
task, the results at the end) into one kind of output. They only format; nothing here trains or evaluates.

A logger whose output must continue across an interruption says where it stands (``state``, saved in every
checkpoint) and is built again from it by the resumed run.
"""
import csv
import io
import logging
import os
import re
import secrets
from typing import Any, Dict, List, Mapping, Optional, Sequence

from torch.utils.tensorboard import SummaryWriter

from evaluation.task_agnostic import TABLE_RULE, RowWithoutLabel
from models.multihead import ALL_TASKS
from utils.errors import UserError
from utils.files import atomic_write_bytes, write_error

log = logging.getLogger("training")


def without_label_columns(without_label: Optional[RowWithoutLabel], task: str) -> Dict[str, float]:
    """The CSV columns of ``task``'s evaluation without its label: ``task_agnostic_<rule>`` (accuracy %) and
    ``task_id_<rule>`` (task identity %) for each rule; none without ``--task_agnostic``."""
    return {f"{prefix}_{rule}": kinds[kind][task] for rule, kinds in (without_label or {}).items()
            for prefix, kind in (("task_agnostic", "accuracy"), ("task_id", "task_id"))}


def without_label_scalars(without_label: Optional[RowWithoutLabel]) -> Dict[str, float]:
    """The dashboards' scalars of an evaluation without the label: ``task_agnostic/<rule>/task_<name>`` and
    ``task_id/<rule>/task_<name>`` (%); none without ``--task_agnostic``."""
    return {f"{prefix}/{rule}/task_{task}": value for rule, kinds in (without_label or {}).items()
            for prefix, kind in (("task_agnostic", "accuracy"), ("task_id", "task_id"))
            for task, value in kinds[kind].items()}


class Logger:
    """Does nothing; subclasses write somewhere."""

    name = ""
    """The key of its ``state`` in a checkpoint."""

    def log_losses(self, task: str, epoch: int, step: int, terms: Mapping[str, float]) -> None:
        """Loss terms at optimizer step ``step`` (global), in epoch ``epoch`` (1-based) of ``task``."""

    def log_accuracies(self, row: str, step: int, accuracies: Mapping[str, float], model_size: float,
                       without_label: Optional[RowWithoutLabel] = None) -> None:
        """Accuracy (%) of each task evaluated once ``row`` was learnt (a row of the accuracy matrix: a task's name,
        or ``All`` after joint training), the ``step``-th evaluation, and the model's size (MB) then; under
        ``--task_agnostic`` also each task's accuracy and task identity (%) without its label, by rule
        (``without_label``)."""

    def log_results(self, record: Mapping[str, Any]) -> None:
        """The run's results record (``output_run<r>.json``), once every task is learnt."""

    def state(self) -> Dict[str, Any]:
        """Where its output stands, for a resumed run to continue it (empty: nothing to continue)."""
        return {}

    def close(self, completed: bool) -> None:
        """The run ends, ``completed`` or stopped (an error, an interruption)."""


class TextLogger(Logger):
    """Lines through ``logging`` (the driver prints them on stderr)."""

    def log_losses(self, task: str, epoch: int, step: int, terms: Mapping[str, float]) -> None:
        log.info("task %s epoch %d step %d: %s", task, epoch, step,
                 ", ".join(f"{name} {value:.4f}" for name, value in terms.items()))

    def log_accuracies(self, row: str, step: int, accuracies: Mapping[str, float], model_size: float,
                       without_label: Optional[RowWithoutLabel] = None) -> None:
        label = "joint training" if row == ALL_TASKS else f"task {row}"
        log.info("after %s: %s", label, ", ".join(f"{task} {acc:.2f}" for task, acc in accuracies.items()))
        if without_label:
            table = without_label[TABLE_RULE]
            log.info("after %s, without the task label (%s): %s", label, TABLE_RULE,
                     ", ".join(f"{task} {acc:.2f} (task identity {table['task_id'][task]:.2f})"
                               for task, acc in table["accuracy"].items()))


class TensorBoardLogger(Logger):
    """Scalars ``train/<term>`` by optimizer step and ``accuracy/task_<name>`` by task, in ``directory``."""

    def __init__(self, directory: str):
        self.writer = SummaryWriter(directory)

    def log_losses(self, task: str, epoch: int, step: int, terms: Mapping[str, float]) -> None:
        for name, value in terms.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def log_accuracies(self, row: str, step: int, accuracies: Mapping[str, float], model_size: float,
                       without_label: Optional[RowWithoutLabel] = None) -> None:
        for task, accuracy in accuracies.items():
            self.writer.add_scalar(f"accuracy/task_{task}", accuracy, step)
        for name, accuracy in without_label_scalars(without_label).items():
            self.writer.add_scalar(name, accuracy, step)

    def close(self, completed: bool) -> None:
        self.writer.close()


class CSVTable:
    """A CSV file of rows under a header: an existing file's first ``rows`` data rows are kept (a resumed run's),
    the rest dropped; rows are appended as they come, and a row with a new column rewrites the file under the wider
    header (a cell a row lacks stays empty)."""

    def __init__(self, path: str, columns: Sequence[str], rows: int):
        self.path, self.columns, self.rows = path, list(columns), []
        if rows and os.path.isfile(path):
            with open(path, newline="", encoding="utf-8") as stream:
                reader = csv.DictReader(stream)
                self.columns = list(reader.fieldnames or self.columns)
                self.rows = [row for _, row in zip(range(rows), reader)]
        self.rewrite()

    def text(self, rows: Sequence[Mapping[str, Any]], header: bool) -> str:
        stream = io.StringIO()
        writer = csv.DictWriter(stream, self.columns, lineterminator="\n")
        if header:
            writer.writeheader()
        writer.writerows(rows)
        return stream.getvalue()

    def rewrite(self) -> None:
        atomic_write_bytes(self.text(self.rows, header=True).encode(), self.path)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.rows.extend(rows)
        new = [column for row in rows for column in row if column not in self.columns]
        if new:
            self.columns.extend(dict.fromkeys(new))
            self.rewrite()
            return
        try:
            with open(self.path, "a", encoding="utf-8") as stream:
                stream.write(self.text(rows, header=False))
        except OSError as error:
            raise write_error(self.path, error) from None


class CSVLogger(Logger):
    """A run's numbers as two CSV files in its experiment's results folder ``directory``, for pandas or a
    spreadsheet:

    - ``eval_results_run<r>.csv``: one row per evaluation, ``repeat, task_trained, task_evaluated, accuracy,
      model_size`` (accuracy in %; the model's size in MB once ``task_trained`` was learnt, ``All`` after joint
      training), and under ``--task_agnostic`` ``task_agnostic_<rule>, task_id_<rule>`` for each rule (%, without
      the task label: ``without_label_columns``);
    - ``training_results_run<r>.csv``: one row per logged step (every ``--print_freq``), ``repeat, task, epoch,
      step`` and each loss term, a column each in the order they first appear (empty where a step has not that one).

    Its state is each file's number of rows: a resumed run cuts them back to its checkpoint's, and the steps trained
    again append theirs, so the files end as an uninterrupted run's.
    """

    name = "csv"
    COLUMNS = {"eval": ("repeat", "task_trained", "task_evaluated", "accuracy", "model_size"),
               "training": ("repeat", "task", "epoch", "step")}

    def __init__(self, directory: str, repeat: int, state: Optional[Mapping[str, Any]] = None):
        self.repeat = repeat
        rows = (state or {}).get("rows", {})
        self.tables = {kind: CSVTable(os.path.join(directory, f"{kind}_results_run{repeat}.csv"), columns,
                                      rows.get(kind, 0)) for kind, columns in self.COLUMNS.items()}

    def log_losses(self, task: str, epoch: int, step: int, terms: Mapping[str, float]) -> None:
        self.tables["training"].append([{"repeat": self.repeat, "task": task, "epoch": epoch, "step": step,
                                         **terms}])

    def log_accuracies(self, row: str, step: int, accuracies: Mapping[str, float], model_size: float,
                       without_label: Optional[RowWithoutLabel] = None) -> None:
        self.tables["eval"].append([{"repeat": self.repeat, "task_trained": row, "task_evaluated": task,
                                     "accuracy": accuracy, "model_size": model_size,
                                     **without_label_columns(without_label, task)}
                                    for task, accuracy in accuracies.items()])

    def state(self) -> Dict[str, Any]:
        return {"rows": {kind: len(table.rows) for kind, table in self.tables.items()}}


class WandbLogger(Logger):
    """One Weights & Biases run (``wandb.init`` in ``project`` of ``entity``, in ``group``, shown as ``title``) with
    ``config`` as its config:

    - the loss terms of every logged step, ``train/<term>`` against ``train/step`` (with ``train/epoch`` and
      ``train/task``);
    - after each task (``task_trained``), each task's accuracy ``accuracy/task_<name>`` and the model size
      ``model_size`` (MB) against ``tasks_learnt``; under ``--task_agnostic`` also, for each rule,
      ``task_agnostic/<rule>/task_<name>`` and ``task_id/<rule>/task_<name>`` (``without_label_scalars``);
    - at the end, the accuracy matrix as the table ``accuracy_matrix`` (``task_trained, task_evaluated, accuracy,
      model_size``, and the ``task_agnostic_<rule>, task_id_<rule>`` columns of the CSV file where the run has
      them) and in the summary the final ``avg_acc``, ``bwt``, ``forgetting``, ``model_size`` and
      ``dense_models_size``, and for each rule ``task_agnostic/<rule>/avg_acc``, ``.../bwt``, ``.../forgetting``
      and ``.../task_id_acc``.

    Its state is the run's id, drawn when the run starts (its title made safe, and 8 random hex digits): a resumed
    run continues the same W&B run (``resume="allow"``); the steps trained again after a resume are logged again.
    ``wandb`` is imported here, so that the rest of the project runs without it; a run W&B refuses to start (not
    logged in, no network) is a one-line error.
    """

    name = "wandb"

    def __init__(self, project: str, entity: Optional[str], group: Optional[str], title: str,
                 config: Mapping[str, Any], state: Optional[Mapping[str, Any]] = None):
        import wandb

        self.run_id = (state or {}).get("id") or f"{re.sub(r'[^A-Za-z0-9_-]+', '-', title)}-{secrets.token_hex(4)}"
        try:
            self.run = wandb.init(project=project, entity=entity, group=group, name=title, id=self.run_id,
                                  resume="allow")
        except wandb.errors.Error as error:
            raise UserError(f"--wandb_project {project}: W&B cannot start the run {self.run_id}: "
                            f"{' '.join(str(error).split())} (or set WANDB_MODE=offline to log into ./wandb/ and "
                            f"`wandb sync` later)") from None
        self.run.config.update(dict(config), allow_val_change=True)
        self.run.define_metric("train/step")
        self.run.define_metric("train/*", step_metric="train/step")
        self.run.define_metric("tasks_learnt")
        for metric in ("accuracy/*", "model_size", "task_agnostic/*", "task_id/*"):
            self.run.define_metric(metric, step_metric="tasks_learnt")
        self.wandb = wandb

    def log_losses(self, task: str, epoch: int, step: int, terms: Mapping[str, float]) -> None:
        self.run.log({"train/step": step, "train/epoch": epoch, "train/task": task,
                      **{f"train/{name}": value for name, value in terms.items()}})

    def log_accuracies(self, row: str, step: int, accuracies: Mapping[str, float], model_size: float,
                       without_label: Optional[RowWithoutLabel] = None) -> None:
        self.run.log({"tasks_learnt": step, "task_trained": row, "model_size": model_size,
                      **{f"accuracy/task_{task}": accuracy for task, accuracy in accuracies.items()},
                      **without_label_scalars(without_label)})

    def log_results(self, record: Mapping[str, Any]) -> None:
        sizes, matrices = record["model_size_after_task"], record.get("task_agnostic", {})
        columns = list(CSVLogger.COLUMNS["eval"][1:]) + [f"{kind}_{rule}" for rule in matrices
                                                          for kind in ("task_agnostic", "task_id")]
        rows = [[trained, evaluated, accuracy, sizes[trained],
                 *(matrices[rule][key][trained][evaluated] for rule in matrices
                   for key in ("acc_matrix", "task_id_matrix"))]
                for trained, accuracies in record["acc_matrix"].items() for evaluated, accuracy in accuracies.items()]
        self.run.log({"accuracy_matrix": self.wandb.Table(columns=columns, data=rows)})
        self.run.summary.update({key: record[key] for key in ("avg_acc", "bwt", "forgetting", "model_size",
                                                              "dense_models_size")})
        self.run.summary.update({f"task_agnostic/{rule}/{key}": entry[key] for rule, entry in matrices.items()
                                 for key in ("avg_acc", "bwt", "forgetting", "task_id_acc")})

    def state(self) -> Dict[str, Any]:
        return {"id": self.run_id}

    def close(self, completed: bool) -> None:
        self.run.finish(exit_code=0 if completed else 1)


class Loggers(Logger):
    """Several loggers as one; its state holds each one's, under its ``name``."""

    def __init__(self, loggers: Sequence[Logger]):
        self.loggers: List[Logger] = list(loggers)

    def log_losses(self, task: str, epoch: int, step: int, terms: Mapping[str, float]) -> None:
        for logger in self.loggers:
            logger.log_losses(task, epoch, step, terms)

    def log_accuracies(self, row: str, step: int, accuracies: Mapping[str, float], model_size: float,
                       without_label: Optional[RowWithoutLabel] = None) -> None:
        for logger in self.loggers:
            logger.log_accuracies(row, step, accuracies, model_size, without_label)

    def log_results(self, record: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_results(record)

    def state(self) -> Dict[str, Any]:
        return {logger.name: logger.state() for logger in self.loggers if logger.state()}

    def close(self, completed: bool) -> None:
        for logger in self.loggers:
            logger.close(completed)
