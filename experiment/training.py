"""Training as the driver runs it: every experiment of the sweep, ``--repeat`` runs each, checkpointed as it goes and
resumable (``--resume``), with its results files and saved models; and one repeat of one experiment alone, as a job
of a cluster sweep runs it."""
import functools
import logging
import os
from typing import Callable, List

from evaluation.results import format_table, final_record_path, write_final_record, write_run_record
from experiment.checkpoints import Position, RunCheckpoints, exclusive_run
from experiment.config import Config, Experiment
from experiment.run import Run
from experiment.saved_model import save_agents
from utils.errors import UserError

log = logging.getLogger(__name__)


def refuse_to_clobber(config: Config) -> None:
    """A finished experiment's results are kept unless ``--overwrite`` is given."""
    for experiment in config.experiments():
        final = final_record_path(experiment.name)
        if os.path.exists(final):
            raise UserError(f"{final} holds a finished experiment: choose another --exp_name, or pass --overwrite "
                            f"to replace it")


def checkpoints_of(config: Config, directory: str) -> RunCheckpoints:
    return RunCheckpoints(os.path.join(directory, "checkpoints"), config.flags,
                          interval=config.run.checkpoint_interval)


def start_position(config: Config, checkpoints: RunCheckpoints) -> Position:
    """Where training starts: the beginning, or with ``--resume`` the latest checkpoint of an interrupted run.

    Without ``--overwrite``, a fresh start never replaces a finished experiment or an interrupted run's checkpoints.
    """
    run = config.run
    if run.overwrite:
        checkpoints.clear()
        return Position()
    if not checkpoints.numbers():
        refuse_to_clobber(config)
        if run.resume:
            log.info("--resume: no checkpoint in %s, starting from the beginning", checkpoints.directory)
        return Position()
    if not run.resume:
        raise UserError(f"{checkpoints.directory} holds an interrupted run of --exp_name {run.exp_name}: pass "
                        f"--resume to continue it, or --overwrite to start over")
    return checkpoints.resumed() or Position()


def train_repeat(config: Config, experiment: Experiment, device, data, position: Position,
                 checkpoints: RunCheckpoints, save_model: bool = True) -> dict:
    """Repeat ``position.repeat`` of ``experiment``, from ``position`` on (random generators in the state
    ``position.rng``, or seeded afresh when None): writes its ``output_run<r>.json`` and, with ``save_model``, its
    model into ``saves/<experiment>/`` (each repeat overwrites the last, as published); moves ``position`` on to the
    next repeat and checkpoints it. Returns the run's record."""
    save: Callable[[bool], None] = functools.partial(checkpoints.save, position)
    run = Run(config, experiment, position.repeat, device, data, position.progress, save, position.rng)
    record, agents = run.train()
    write_run_record(experiment.name, position.repeat, record)
    if save_model:
        save_agents(agents, os.path.join("saves", experiment.name))
    position.finish_repeat(record)
    checkpoints.save(position)
    return record


def train(config: Config, device, data) -> List[str]:
    """Train every experiment of the flags (or continue an interrupted sweep), checkpointed as it goes; returns
    the tables to print."""
    directory = os.path.join("saves", config.run.exp_name)
    with exclusive_run(directory, config.run.exp_name):
        checkpoints = checkpoints_of(config, directory)
        position = start_position(config, checkpoints)
        experiments = config.experiments()
        for experiment in experiments[position.experiment_index:]:
            while position.repeat < config.protocol.repeat:
                train_repeat(config, experiment, device, data, position, checkpoints)
            write_final_record(experiment.name, position.runs)
            position.finish_experiment(experiment.name)
            checkpoints.save(position)
        checkpoints.clear()
    return [format_table(name, runs) for name, runs in position.finished.items()]


def train_job(config: Config, device, data, experiment_index: int, repeat: int, directory: str) -> dict:
    """Repeat ``repeat`` of the experiment of index ``experiment_index`` (into ``Config.experiments``) alone, as one
    job of a cluster sweep runs it: what ``train`` computes for that repeat, with the lock and checkpoints in
    ``directory`` (jobs of one ``--exp_name`` run side by side), continued from the latest checkpoint there if there
    is one.

    Only the last repeat saves its model: a whole sweep leaves the last repeat's in ``saves/<experiment>/``, and
    jobs finishing in any order must leave the same. Returns the run's record.
    """
    experiment = config.experiments()[experiment_index]
    with exclusive_run(directory, f"{experiment.name} (repeat {repeat})"):
        checkpoints = checkpoints_of(config, directory)
        position = checkpoints.resumed() or Position(experiment_index=experiment_index, repeat=repeat)
        if position.repeat == repeat:  # not yet finished
            train_repeat(config, experiment, device, data, position, checkpoints,
                         save_model=repeat == config.protocol.repeat - 1)
        checkpoints.clear()
    return position.runs[-1]
