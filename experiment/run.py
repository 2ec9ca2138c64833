"""One run: the whole task sequence, for one experiment of the sweep and one repeat, under the chosen protocol."""
import logging
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from agents import NormalNN
from agents.default import EpochReport
from agents.model_size import individual_models_size_mb
from evaluation.loggers import CSVLogger, Logger, Loggers, TensorBoardLogger, TextLogger, WandbLogger
from evaluation.metrics import AccuracyMatrix
from evaluation.results import metrics_record, results_directory, run_record
from evaluation.task_agnostic import Matrices, row_of
from experiment.builders import make_agent, make_tasks
from experiment.config import Config, Experiment
from experiment.protocols import Hooks, Progress, learn_jointly, learn_separately, learn_sequentially
from models.multihead import ALL_TASKS
from utils.environment import environment_record
from utils.errors import UserError
from utils.runtime import restore_rng, seed_everything

log = logging.getLogger(__name__)


def units_added(agents: Sequence[NormalNN]) -> Dict[int, List[int]]:
    """What each task added to each layer, by task index (``NormalNN.units_added``); with one model per task
    (``--ind_models``) each model's own task's."""
    if len(agents) == 1:
        return agents[0].units_added()
    return {index: agent.units_added()[0] for index, agent in enumerate(agents) if agent.units_added()}


def head_parameters(agents: Sequence[NormalNN], tasks: Optional[Sequence[str]] = None) -> int:
    """Weights and biases of the heads of ``tasks`` (every head when None) over the agents; a head shared by every
    task (``--force_out_dim``) counts once, as soon as one task is learnt."""
    return sum(p.numel() for agent in agents for name, head in agent.model.last.items()
               if tasks is None or name in tasks or name == ALL_TASKS for p in head.parameters())


def results_record(acc_matrix: AccuracyMatrix, agents: Sequence[NormalNN], n_tasks: int,
                   task_agnostic: Matrices) -> dict:
    """The results record of a run's agents: one, or one per task (``--ind_models``, whose sizes add up); with its
    accuracies without the task label when ``task_agnostic`` holds any."""
    last = agents[-1]
    return run_record(acc_matrix, units_added(agents), last.results_keys(),
                      sum(agent.model_size_mb() for agent in agents),
                      individual_models_size_mb(last.dense_feature_parameters(), n_tasks, head_parameters(agents)),
                      task_agnostic)


def tasks_learnt(rows: List[str], n_tasks: int) -> List[int]:
    """How many tasks are learnt after each row of the accuracy matrix: k after the k-th, all after joint
    training."""
    return [n_tasks if row == ALL_TASKS else number for number, row in enumerate(rows, start=1)]


class Run(Hooks):
    """Repeat ``repeat`` of ``experiment``, seeded with ``--seed`` + ``repeat``.

    An interrupted run is continued from ``progress`` (tasks done, accuracies, agents' training states, where the
    loggers stood) and the random generators' state ``rng`` saved with it. ``progress`` is kept up to date, and
    ``save_progress(optional)`` called, after every task and (optional) every epoch. Loss terms and accuracies go to
    the loggers of ``open_loggers``.
    """

    def __init__(self, config: Config, experiment: Experiment, repeat: int, device, data, progress: Progress,
                 save_progress: Callable[[bool], None], rng: Optional[dict] = None):
        self.config, self.experiment, self.repeat, self.device = config, experiment, repeat, device
        self.progress, self.save_progress, self.rng = progress, save_progress, rng
        seed_everything(config.protocol.seed + repeat)
        self.tasks = make_tasks(config, data, device)
        self.stream = self.tasks.stream
        self.agents: List[NormalNN] = []
        self.loggers = Loggers([])
        if progress.agents and progress.task_order != self.stream.names:
            raise UserError(f"--resume: the checkpoint's task order {' '.join(progress.task_order)} is not the one "
                            f"these flags give, {' '.join(self.stream.names)}")

    def new_agent(self, task: Optional[str] = None, state: Optional[dict] = None) -> NormalNN:
        """A fresh agent, or one continued from a saved training ``state``; with ``--ind_models``, ``task``'s own
        model, with only its head (as published)."""
        out_dim = self.tasks.out_dim
        if self.config.protocol.ind_models and task in out_dim:
            out_dim = {task: out_dim[task]}
        agent = make_agent(self.config, self.experiment, self.device, self.tasks.image_size, out_dim,
                           state=state and state["model"], source="the checkpoint")
        if state is not None:
            agent.load_training_state(state)
        return agent

    def train(self) -> Tuple[dict, List[NormalNN]]:
        """Train (the rest of) the sequence; returns the run's results record and its agents."""
        protocol = self.config.protocol
        self.agents.extend(self.new_agent(task, state) for task, state in zip(self.stream.names,
                                                                              self.progress.agents))
        if self.agents:
            restore_rng(self.rng)
        elif not protocol.ind_models:
            self.agents.append(self.new_agent())
        self.loggers = self.open_loggers()
        completed = False
        try:
            if protocol.ind_models:
                acc_matrix = learn_separately(self.new_agent, self.stream, self.progress, self, self.agents)
            elif protocol.offline_training:
                acc_matrix = learn_jointly(self.agents[0], self.stream, self.progress, self)
            else:
                acc_matrix = learn_sequentially(self.agents[0], self.stream, self.progress, self,
                                                only_current=protocol.single_tasks)
            record = results_record(acc_matrix, self.agents, len(self.stream.names), self.progress.task_agnostic)
            record.update(self.metrics(acc_matrix))
            self.loggers.log_results(record)
            completed = True
        finally:
            self.loggers.close(completed)
        return record, self.agents

    def open_loggers(self) -> Loggers:
        """Weights & Biases with ``--wandb_project`` (first: a run W&B refuses writes nothing), the text log,
        TensorBoard under ``runs/<experiment>/run<repeat>/`` and the CSV files in ``results/<experiment>/``, each
        continuing from where a resumed run's checkpoint left it (``progress.loggers``)."""
        saved, dashboards, name = self.progress.loggers, self.config.dashboards, self.experiment.name
        loggers: List[Logger] = []
        if dashboards.wandb_project:
            config = {**self.config.flags, **self.experiment.swept, "experiment": name, "repeat_index": self.repeat}
            loggers.append(WandbLogger(dashboards.wandb_project, dashboards.wandb_entity,
                                       dashboards.wandb_group or self.config.run.exp_name, f"{name} run {self.repeat}",
                                       config, saved.get(WandbLogger.name)))
        loggers += [TextLogger(), TensorBoardLogger(os.path.join("runs", name, f"run{self.repeat}")),
                    CSVLogger(results_directory(name), self.repeat, saved.get(CSVLogger.name))]
        return Loggers(loggers)

    def metrics(self, acc_matrix) -> dict:
        """BWT, forgetting, seconds and images per second per task, sizes after each task and the environment
        (``metrics_record``)."""
        last, rows = self.agents[-1], list(acc_matrix)
        seconds = {task: agent.task_seconds[task] for agent in self.agents for task in agent.task_seconds}
        speeds = {task: rate for agent in self.agents for task, rate in agent.images_per_second().items()}
        learnt = tasks_learnt(rows, len(self.stream.names))
        names = self.stream.names
        features = last.dense_feature_parameters()
        dense = {row: individual_models_size_mb(features, n, head_parameters(self.agents, names[:n]))
                 for row, n in zip(rows, learnt)}
        environment = environment_record(self.device, self.config.flags, self.config.method.own_flags,
                                         self.config.method.title)
        return metrics_record(acc_matrix, seconds, speeds, self.progress.model_sizes, dense, self.experiment.swept,
                              environment)

    # --- hooks ----------------------------------------------------------------------------------------------
    def before_task(self, name: str) -> None:
        """``--incremental_class``: the shared head's outputs of the classes seen so far, this task's included."""
        if self.config.protocol.incremental_class:
            seen = self.stream.names[:self.stream.names.index(name) + 1]
            self.agents[0].set_valid_output_dim(sum(self.tasks.classes[task] for task in seen))

    def after_epoch(self, report: EpochReport) -> None:
        for step, terms in report.losses:
            self.loggers.log_losses(report.task, report.epoch, step, terms)
        self.checkpoint(end_of_epoch=True)

    def after_task(self, row: str, step: int, accuracies: Mapping[str, float]) -> None:
        without_label = row_of(self.progress.task_agnostic, row) if self.progress.task_agnostic else None
        self.loggers.log_accuracies(row, step, accuracies, self.progress.model_sizes[row], without_label)
        self.checkpoint()

    def checkpoint(self, end_of_epoch: bool = False) -> None:
        """Bring ``progress`` up to date and hand it to ``save_progress`` (optional at the end of an epoch)."""
        self.progress.task_order = list(self.stream.names)
        self.progress.agents = [agent.training_state() for agent in self.agents]
        self.progress.loggers = self.loggers.state()
        self.save_progress(end_of_epoch)
