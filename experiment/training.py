"""Training as the driver runs it: every experiment of the sweep (``--sparse_wt``), ``--repeat`` runs each, checkpointed as it goes
and resumable (``--resume``), with its results files and saved models; and one repeat of one experiment alone, as a
job of a cluster sweep runs it."""
import logging
import os
from typing import Callable, List, Optional, Tuple

from agents import NormalNN
from dataloaders import split_boundaries
from evaluation.results import format_table, final_record_path, write_final_record, write_run_record
from experiment.builders import MULTIDATASET, Setting, sweep_settings
from experiment.checkpoints import Position, RunCheckpoints, check_same_settings, exclusive_run
from experiment.run import Run, ranks_of
from experiment.saved_model import save_checkpoint
from utils.errors import UserError
from utils.files import atomic_torch_save

log = logging.getLogger(__name__)


def save_agents(agents: List[NormalNN], directory: str) -> None:
    """The published checkpoint files; with ``--ind_models`` one folder ``task<name>/`` per task's model."""
    if len(agents) > 1:
        for agent in agents:
            save_agent(agent, os.path.join(directory, f"task{agent.tasks_trained[0]}"))
    else:
        save_agent(agents[0], directory)


def save_agent(agent: NormalNN, directory: str) -> None:
    if hasattr(agent, "task_identifiers"):
        save_checkpoint(directory, agent.model.state_dict(), ranks_of(agent), agent.task_identifiers,
                        agent.task_name_count, agent.chann_used, agent.running_stats)
    else:
        atomic_torch_save(agent.model.state_dict(), os.path.join(directory, "final_model.pth"))


def refuse_to_clobber(args) -> None:
    """A finished experiment's results are kept unless ``--overwrite`` is given."""
    for setting in sweep_settings(args):
        final = final_record_path(setting.name)
        if os.path.exists(final):
            raise UserError(f"{final} holds a finished experiment: choose another --exp_name, or pass --overwrite "
                            f"to replace it")


def start_position(args, checkpoints: RunCheckpoints) -> Tuple[Position, Optional[dict]]:
    """Where training starts, and the random generators' state there: the beginning (None: seeded as usual), or
    with ``--resume`` the latest checkpoint of an interrupted run.

    Without ``--overwrite``, a fresh start never replaces a finished experiment or an interrupted run's checkpoints.
    """
    if args.overwrite:
        checkpoints.clear()
        return Position(), None
    checkpoint = checkpoints.latest()
    if checkpoint is None:
        refuse_to_clobber(args)
        if args.resume:
            log.info("--resume: no checkpoint in %s, starting from the beginning", checkpoints.directory)
        return Position(), None
    if not args.resume:
        raise UserError(f"{checkpoints.directory} holds an interrupted run of --exp_name {args.exp_name}: pass "
                        f"--resume to continue it, or --overwrite to start over")
    check_same_settings(checkpoint["args"], args, checkpoint["path"])
    position = checkpoint["position"]
    settings = sweep_settings(args)
    log.info("resuming from %s: %s, repeat %d, %d task(s) done", checkpoint["path"],
             settings[min(position.experiment, len(settings) - 1)].name, position.repeat, position.tasks_done)
    return position, checkpoint["rng"]


def train_sweep(args, device, data, checkpoints: RunCheckpoints, position: Position,
                rng: Optional[dict]) -> List[str]:
    """Every experiment of ``sweep_settings``, ``--repeat`` runs each, from ``position`` on and checkpointed as it
    goes; returns the tables."""
    def save_position(optional: bool = False) -> None:
        checkpoints.save(args, position, optional)

    settings = sweep_settings(args)
    for setting in settings[position.experiment:]:
        experiment = setting.name
        while position.repeat < args.repeat:
            train_repeat(args, setting, device, data, position, save_position, rng)
            rng = None
        write_final_record(experiment, position.runs)
        position.finish_experiment(experiment)
        save_position()
    checkpoints.clear()
    return [format_table(experiment, runs) for experiment, runs in position.finished.items()]


def train_repeat(args, setting: Setting, device, data, position: Position, save_position: Callable[..., None],
                 rng: Optional[dict], save_model: bool = True) -> dict:
    """Repeat ``position.repeat`` of ``setting``, from ``position`` on (random generators in state ``rng``, or
    seeded afresh when None): writes its ``output_run<r>.json`` and, with ``save_model``, its model into
    ``saves/<setting>/`` (each repeat overwrites the last, as published); moves ``position`` on to the next repeat
    and checkpoints it through ``save_position``. Returns the run's record."""
    run = Run(args, setting, position.repeat, device, data, position, save_position, rng)
    record, agents = run.train()
    write_run_record(setting.name, position.repeat, record)
    if save_model:
        save_agents(agents, os.path.join("saves", setting.name))
    position.finish_repeat(record)
    save_position()
    return record


def check_split_sizes(args, data) -> None:
    """Bad split sizes stop before anything is touched."""
    if args.dataset != MULTIDATASET and args.n_permutation == 0:
        split_boundaries(data[0].num_classes, args.first_split_size, args.other_split_size)


def train(args, device, data) -> List[str]:
    """Train every experiment of the flags (or continue an interrupted sweep); returns the tables to print."""
    check_split_sizes(args, data)
    with exclusive_run(os.path.join("saves", args.exp_name), args.exp_name):
        checkpoints = RunCheckpoints(os.path.join("saves", args.exp_name, "checkpoints"),
                                     interval=args.checkpoint_interval)
        position, rng = start_position(args, checkpoints)
        return train_sweep(args, device, data, checkpoints, position, rng)


def train_job(args, device, data, experiment: int, repeat: int, directory: str) -> dict:
    """Repeat ``repeat`` of experiment ``experiment`` (an index into ``sweep_settings``) alone, as one job of a
    cluster sweep runs it: what ``train`` computes for that repeat, with the lock and checkpoints in ``directory``
    (jobs of one ``--exp_name`` run side by side), continued from the latest checkpoint there if there is one.

    Only the last repeat saves its model: a whole sweep leaves the last repeat's in ``saves/<experiment>/``, and
    jobs finishing in any order must leave the same. Returns the run's record.
    """
    check_split_sizes(args, data)
    setting = sweep_settings(args)[experiment]
    with exclusive_run(directory, f"{setting.name} (repeat {repeat})"):
        checkpoints = RunCheckpoints(os.path.join(directory, "checkpoints"), interval=args.checkpoint_interval)
        position, rng = Position(experiment=experiment, repeat=repeat), None
        checkpoint = checkpoints.latest()
        if checkpoint is not None:
            check_same_settings(checkpoint["args"], args, checkpoint["path"])
            position, rng = checkpoint["position"], checkpoint["rng"]
            log.info("resuming from %s: %s, repeat %d, %d task(s) done", checkpoint["path"], setting.name, repeat,
                     position.tasks_done)
        if position.repeat == repeat:  # not yet finished

            def save_position(optional: bool = False) -> None:
                checkpoints.save(args, position, optional)

            train_repeat(args, setting, device, data, position, save_position, rng,
                         save_model=repeat == args.repeat - 1)
        checkpoints.clear()
    return position.runs[-1]
