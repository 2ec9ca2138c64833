"""One run: the whole task sequence, for one sparsity weight and one repeat, under the chosen protocol."""
import logging
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from agents import NormalNN
from agents.default import EpochReport
from agents.model_size import individual_models_size_mb
from evaluation.loggers import Loggers, TensorBoardLogger, TextLogger
from evaluation.metrics import AccuracyMatrix
from evaluation.results import metrics_record, run_record
from experiment.builders import (Setting, build_tasks, evaluation_splits, image_size, make_agent, output_dims,
                                 task_order)
from experiment.checkpoints import Position
from experiment.protocols import (Hooks, Progress, TaskStream, learn_jointly, learn_separately,
                                  learn_sequentially)
from models import svd_layers
from models.multihead import ALL_TASKS
from utils.environment import environment_record
from utils.errors import UserError
from utils.runtime import restore_rng, seed_everything

log = logging.getLogger(__name__)


def ranks_of(agent: NormalNN) -> List[int]:
    return [layer.rank for layer in svd_layers(agent.model)]


def channels_of(agents: Sequence[NormalNN]) -> Dict[int, List[int]]:
    """Components each task added to each SVD layer, by task index: CACL's ``chann_used``; with one model per task
    (``--ind_models``) each model's own task's; none for agents without SVD layers."""
    if not hasattr(agents[0], "chann_used"):
        return {}
    if len(agents) == 1:
        return agents[0].chann_used
    return {index: agent.chann_used[0] for index, agent in enumerate(agents)}


def head_parameters(agents: Sequence[NormalNN], tasks: Optional[Sequence[str]] = None) -> int:
    """Weights and biases of the heads of ``tasks`` (every head when None) over the agents; a head shared by every
    task (``--force_out_dim``) counts once, as soon as one task is learnt."""
    return sum(p.numel() for agent in agents for name, head in agent.model.last.items()
               if tasks is None or name in tasks or name == ALL_TASKS for p in head.parameters())


def results_record(acc_matrix: AccuracyMatrix, agents: Sequence[NormalNN], n_tasks: int) -> dict:
    """The results record of a run's agents: one, or one per task (``--ind_models``, whose sizes add up)."""
    last = agents[-1]
    return run_record(acc_matrix, channels_of(agents), [layer.formula_rank for layer in svd_layers(last.model)],
                      ranks_of(last), sum(agent.model_size_mb() for agent in agents),
                      individual_models_size_mb(last.model, n_tasks, head_parameters(agents)))


def tasks_learnt(rows: List[str], n_tasks: int) -> List[int]:
    """How many tasks are learnt after each row of the accuracy matrix: k after the k-th, all after joint
    training."""
    return [n_tasks if row == ALL_TASKS else number for number, row in enumerate(rows, start=1)]


class Run(Hooks):
    """Repeat ``repeat`` of the experiment ``setting``, seeded with ``--seed`` + ``repeat``.

    An interrupted run is continued from ``position`` (tasks done, accuracies, agents' training states) and the
    random generators' state ``rng`` saved with it. ``position`` is kept up to date, and ``save_position(optional)``
    called, after every task and (optional) every epoch. Loss terms and accuracies go to the text log and to
    TensorBoard under ``runs/<setting name>/run<repeat>/``.
    """

    def __init__(self, args, setting: Setting, repeat: int, device, data, position: Position,
                 save_position: Callable[[bool], None], rng: Optional[dict] = None):
        self.args, self.setting, self.repeat, self.device = args, setting, repeat, device
        self.position, self.save_position, self.rng = position, save_position, rng
        seed_everything(args.seed + repeat)
        train_splits, test_splits, self.task_output_space = build_tasks(args, data)
        self.stream = TaskStream(task_order(args, list(train_splits)), train_splits,
                                 evaluation_splits(args, train_splits, test_splits), args.batch_size, device)
        self.image_size = image_size(train_splits)
        self.out_dim = output_dims(args, self.task_output_space)
        self.progress = Progress(position.tasks_done, position.acc_matrix, position.model_sizes)
        self.agents: List[NormalNN] = []
        self.loggers = Loggers([])
        if position.agents and position.task_order != self.stream.names:
            raise UserError(f"--resume: the checkpoint's task order {' '.join(position.task_order)} is not the one "
                            f"these flags give, {' '.join(self.stream.names)}")

    def new_agent(self, task: Optional[str] = None, state: Optional[dict] = None) -> NormalNN:
        """A fresh agent, or one continued from a saved training ``state``; with ``--ind_models``, ``task``'s own
        model, with only its head (as published)."""
        out_dim = self.out_dim
        if self.args.ind_models and task in out_dim:
            out_dim = {task: out_dim[task]}
        agent = make_agent(self.args, self.device, self.image_size, out_dim, self.setting.overrides,
                           state=state and state["model"], source="the checkpoint")
        if state is not None:
            agent.load_training_state(state)
        return agent

    def train(self) -> Tuple[dict, List[NormalNN]]:
        """Train (the rest of) the sequence; returns the run's results record and its agents."""
        args = self.args
        directory = os.path.join("runs", self.setting.name, f"run{self.repeat}")
        self.loggers = Loggers([TextLogger(), TensorBoardLogger(directory)])
        try:
            self.agents.extend(self.new_agent(task, state) for task, state in zip(self.stream.names,
                                                                                  self.position.agents))
            if self.agents:
                restore_rng(self.rng)
            if args.ind_models:
                acc_matrix = learn_separately(self.new_agent, self.stream, self.progress, self, self.agents)
            else:
                if not self.agents:
                    self.agents.append(self.new_agent())
                if args.offline_training:
                    acc_matrix = learn_jointly(self.agents[0], self.stream, self.progress, self)
                else:
                    acc_matrix = learn_sequentially(self.agents[0], self.stream, self.progress, self,
                                                    only_current=args.single_tasks)
        finally:
            self.loggers.close()
        record = results_record(acc_matrix, self.agents, len(self.stream.names))
        record.update(self.metrics(acc_matrix))
        return record, self.agents

    def metrics(self, acc_matrix) -> dict:
        """BWT, forgetting, seconds per task, sizes after each task and the environment (``metrics_record``)."""
        last, rows = self.agents[-1], list(acc_matrix)
        seconds = {task: agent.task_seconds[task] for agent in self.agents for task in agent.task_seconds}
        learnt = tasks_learnt(rows, len(self.stream.names))
        names = self.stream.names
        dense = {row: individual_models_size_mb(last.model, n, head_parameters(self.agents, names[:n]))
                 for row, n in zip(rows, learnt)}
        return metrics_record(acc_matrix, seconds, self.progress.model_sizes, dense, self.setting.overrides,
                              environment_record(self.device, vars(self.args)))

    # --- hooks ----------------------------------------------------------------------------------------------
    def before_task(self, name: str) -> None:
        """``--incremental_class``: the shared head's outputs of the classes seen so far, this task's included."""
        if self.args.incremental_class:
            seen = self.stream.names[:self.stream.names.index(name) + 1]
            self.agents[0].set_valid_output_dim(sum(self.task_output_space[task] for task in seen))

    def after_epoch(self, report: EpochReport) -> None:
        for step, terms in report.losses:
            self.loggers.log_losses(report.task, report.epoch, step, terms)
        self.checkpoint(end_of_epoch=True)

    def after_task(self, label: str, step: int, accuracies: Mapping[str, float]) -> None:
        self.loggers.log_accuracies(label, step, accuracies)
        self.checkpoint()

    def checkpoint(self, end_of_epoch: bool = False) -> None:
        """Bring ``position`` up to date and hand it to ``save_position`` (optional at the end of an epoch)."""
        position = self.position
        position.task_order = list(self.stream.names)
        position.tasks_done, position.acc_matrix = self.progress.tasks_done, self.progress.acc_matrix
        position.model_sizes = self.progress.model_sizes
        position.agents = [agent.training_state() for agent in self.agents]
        self.save_position(end_of_epoch)
