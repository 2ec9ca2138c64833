"""A sweep as cluster jobs: one job per (experiment, repeat) of the flags' sweep, the record of what was submitted
(``<sweep_dir>/sweep.json``), each job's state, and the averages once every repeat of an experiment is done.

A sweep directory holds ``sweep.json``, submitit's folder ``logs/`` (submission scripts, pickled jobs, each job's
``<job id>_0_log.out`` and ``.err``) and ``jobs/<experiment>/run<r>/``: that job's lock and checkpoints while it
runs, its run record ``done.json`` once it has finished. Results, saved models and TensorBoard logs go where a
single-process run writes them (``results/``, ``saves/``, ``runs/`` under the directory the sweep was submitted
from).
"""
import json
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Optional, Tuple

from submitit.helpers import Checkpointable, DelayedSubmission

from cluster.executors import job_states, log_tail
from cluster.packing import SLOTS, Packing, packed, slot_holders
from evaluation.results import format_table, write_final_record
from experiment.builders import load_data
from experiment.checkpoints import run_settings, settings_differences
from experiment.config import Config, prepared_run
from experiment.training import train_job
from utils.errors import UserError
from utils.files import atomic_json_dump
from utils.logs import configure_logging

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = 1
DONE_FILE = "done.json"
JOB_STATES = ("done", "running", "pending", "failed", "unknown", "new")
"""A job's state: done (its run record is written), running, pending (queued, or requeued), failed (it ended
without its record: an error, a kill, a time limit), unknown (the cluster did not answer), new (never submitted)."""
RESUBMITTED = ("failed", "new")


def job_directory(sweep_dir: str, experiment: str, repeat: int) -> str:
    return os.path.join(sweep_dir, "jobs", experiment, f"run{repeat}")


@dataclass
class SweepJob(Checkpointable):
    """Repeat ``repeat`` of the experiment of index ``experiment_index`` (into ``config.experiments()``) as a
    picklable submitit job: in ``workdir``, in a slot of ``packing`` (a local sweep's; ``cluster.packing.packed``),
    the device (``prepared_run``), the data, then ``train_job`` with the lock and checkpoints in ``directory``, where
    its record ``done.json`` is written at the end.

    Pre-empted or timed out (SLURM signals it), submitit calls ``checkpoint``: the job is requeued as it is, at most
    ``max_requeues`` times, and continues from its latest checkpoint.
    """

    config: Config
    experiment_index: int
    repeat: int
    directory: str
    workdir: str
    max_requeues: int
    requeues: int = 0
    packing: Optional[Packing] = None

    def __call__(self) -> dict:
        os.chdir(self.workdir)
        configure_logging()
        with packed(self.packing, self.config, self.directory) as config, prepared_run(config) as device:
            record = train_job(config, device, load_data(config.data), self.experiment_index, self.repeat,
                               self.directory)
        atomic_json_dump(record, os.path.join(self.directory, DONE_FILE))
        return record

    def checkpoint(self) -> Optional[DelayedSubmission]:
        """submitit's hook on pre-emption or time-out: the same job, to be requeued (None: not requeued)."""
        if self.requeues >= self.max_requeues:
            log.warning("stopped after %d requeue(s) (--max_requeues): not requeued again; resubmit the sweep to "
                        "continue from the latest checkpoint", self.requeues)
            return None
        log.info("requeued (%d of at most %d): the job continues from its latest checkpoint", self.requeues + 1,
                 self.max_requeues)
        return DelayedSubmission(replace(self, requeues=self.requeues + 1))


@dataclass
class JobEntry:
    """One job of ``sweep.json``: repeat ``repeat`` of the experiment named ``experiment`` (index ``index`` into the
    sweep's experiments), and its latest submission (``cluster``, ``job_id``; empty: never submitted)."""

    name: str
    experiment: str
    index: int
    repeat: int
    cluster: str = ""
    job_id: str = ""


@dataclass
class Sweep:
    """``sweep.json``: the sweep's directory, the directory results go to (``workdir``), the driver's flags of the
    latest submission, every job, and each submission (cluster, resources, the jobs it submitted, with ids)."""

    directory: str
    workdir: str
    flags: dict
    jobs: List[JobEntry]
    submissions: List[dict] = field(default_factory=list)

    @classmethod
    def plan(cls, directory: str, config: Config) -> "Sweep":
        """A new sweep of the flags: one job per experiment of ``config.experiments()`` and repeat."""
        jobs = [JobEntry(f"{experiment.name} run {repeat}", experiment.name, index, repeat)
                for index, experiment in enumerate(config.experiments()) for repeat in range(config.protocol.repeat)]
        return cls(os.path.abspath(directory), os.getcwd(), dict(config.flags), jobs)

    @classmethod
    def load(cls, directory: str) -> "Sweep":
        path = os.path.join(directory, SWEEP_FILE)
        if not os.path.isfile(path):
            raise UserError(f"{directory} holds no sweep (no {SWEEP_FILE}): give the --sweep_dir a sweep was "
                            f"submitted with")
        with open(path, encoding="utf-8") as stream:
            saved = json_load(stream, path)
        if saved.get("format") != SWEEP_FORMAT:
            raise UserError(f"{path} is not a sweep this version can read (format {saved.get('format')})")
        return cls(os.path.abspath(directory), saved["workdir"], saved["flags"],
                   [JobEntry(**job) for job in saved["jobs"]], saved["submissions"])

    def save(self) -> None:
        atomic_json_dump({"format": SWEEP_FORMAT, **asdict(self)}, os.path.join(self.directory, SWEEP_FILE))

    @property
    def config(self) -> Config:
        """The configuration of the flags of the latest submission."""
        return Config.from_flags(self.flags)

    @property
    def logs(self) -> str:
        """submitit's folder."""
        return os.path.join(self.directory, "logs")

    def job_config(self, config: Config) -> Config:
        """``config`` as the sweep's jobs run it: with ``--wandb_project``, their W&B runs grouped by
        ``--wandb_group``, else by the sweep's name (its directory's)."""
        dashboards = config.dashboards
        if not dashboards.wandb_project:
            return config
        group = dashboards.wandb_group or os.path.basename(self.directory)
        return replace(config, dashboards=replace(dashboards, wandb_group=group))

    def check_same(self, config: Config) -> None:
        """Resubmitting needs the flags this sweep was submitted with (those that change what is computed)."""
        differ = settings_differences(run_settings(self.flags), config.flags)
        if differ:
            raise UserError(f"{self.directory} holds another sweep: {differ}; choose another --sweep_dir, or give "
                            f"that sweep's flags to resubmit its unfinished jobs")

    def job_directory(self, job: JobEntry) -> str:
        return job_directory(self.directory, job.experiment, job.repeat)

    def record(self, job: JobEntry) -> Optional[dict]:
        """The job's run record once it has finished, else None."""
        path = os.path.join(self.job_directory(job), DONE_FILE)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as stream:
            return json_load(stream, path)

    @property
    def slots(self) -> str:
        """The slots of its local jobs (``cluster.packing``)."""
        return os.path.join(self.directory, SLOTS)

    def states(self) -> Dict[str, str]:
        """Each job's state (``JOB_STATES``), by name; a local job whose process waits for a slot is pending."""
        submitted: Dict[str, List[str]] = {}
        for job in self.jobs:
            if job.job_id:
                submitted.setdefault(job.cluster, []).append(job.job_id)
        cluster_states = {cluster: job_states(cluster, self.logs, ids) for cluster, ids in submitted.items()}
        in_slots = slot_holders(self.slots) if os.path.isdir(self.slots) else None  # None: not packed
        states = {}
        for job in self.jobs:
            if os.path.isfile(os.path.join(self.job_directory(job), DONE_FILE)):
                states[job.name] = "done"
            elif not job.job_id:
                states[job.name] = "new"
            else:
                state = cluster_states[job.cluster][job.job_id]
                if state == "running" and in_slots is not None and job.cluster == "local" \
                        and self.job_directory(job) not in in_slots:
                    state = "pending"
                states[job.name] = "failed" if state == "ended" else state
        return states

    def log_tail(self, job: JobEntry) -> List[str]:
        return log_tail(self.logs, job.job_id) if job.job_id else []

    def collect(self) -> Tuple[List[str], List[str]]:
        """``output_final.json`` of every experiment whose repeats are all done, written as a single-process run
        writes it (under the working directory: the sweep's ``workdir``); returns their tables, and the experiments
        left out with their missing repeats."""
        states = self.states()
        tables, missing = [], []
        for experiment in self.config.experiments():
            jobs = sorted((job for job in self.jobs if job.experiment == experiment.name),
                          key=lambda job: job.repeat)
            absent = [f"repeat {job.repeat} {states[job.name]}" for job in jobs if states[job.name] != "done"]
            if absent:
                missing.append(f"{experiment.name} ({', '.join(absent)})")
                continue
            runs = [self.record(job) for job in jobs]
            write_final_record(experiment.name, runs)
            tables.append(format_table(experiment.name, runs))
        return tables, missing


def json_load(stream, path: str):
    try:
        return json.load(stream)
    except json.JSONDecodeError as error:
        raise UserError(f"cannot read {path}: {error}") from None
