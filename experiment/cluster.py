"""Where a sweep's jobs run, through submitit: on SLURM as one job array, on this machine (``local``: one process
per job, all at once) or in this process (``debug``: one after another); and what each job is doing now."""
import os
import shutil
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import submitit
from submitit.core.utils import JobPaths

from utils.errors import UserError

CLUSTERS = ("slurm", "local", "debug")

SLURM_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING", "SUSPENDED",
                 "PREEMPTED"}
"""SLURM states (``sacct``) of a job that has not started, or was stopped to be started again."""
SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


@dataclass(frozen=True)
class Resources:
    """What each job asks for: on SLURM all of it; ``local`` uses the time limit and the number of GPUs.

    A job running longer than ``time`` minutes is stopped and requeued (at most ``max_requeues`` times, pre-emptions
    included); at most ``array_parallelism`` jobs of the array run at once.
    """

    partition: Optional[str] = None
    time: int = 1200
    gpus_per_job: int = 1
    cpus_per_job: int = 2
    mem_gb: float = 20.0
    array_parallelism: int = 256
    max_requeues: int = 3

    def check(self) -> None:
        """One-line errors for values no scheduler accepts."""
        for flag in ("time", "cpus_per_job", "mem_gb", "array_parallelism"):
            if not getattr(self, flag) > 0:
                raise UserError(f"--{flag} must be positive, got {getattr(self, flag)}")
        for flag in ("gpus_per_job", "max_requeues"):
            if getattr(self, flag) < 0:
                raise UserError(f"--{flag} must be 0 or more, got {getattr(self, flag)}")


def check_available(cluster: str) -> None:
    """SLURM jobs are submitted from a machine with SLURM's commands (submitit looks for ``srun``)."""
    if cluster == "slurm" and shutil.which("srun") is None:
        raise UserError("--cluster slurm: SLURM's srun is not on this machine's PATH: submit from a SLURM login "
                        "node, or run the jobs here with --cluster local")


def make_executor(cluster: str, folder: str, resources: Resources, name: str,
                  setup: Sequence[str] = ()) -> submitit.Executor:
    """submitit's executor for ``cluster`` (``check_available``): its scripts, pickled jobs and logs go to
    ``folder``; each job is named ``name``, asks for ``resources`` and runs the shell lines ``setup`` first."""
    executor = submitit.AutoExecutor(folder, cluster=cluster, slurm_max_num_timeout=resources.max_requeues,
                                     local_max_num_timeout=resources.max_requeues)
    executor.update_parameters(name=name, timeout_min=resources.time, gpus_per_node=resources.gpus_per_job,
                               cpus_per_task=resources.cpus_per_job, mem_gb=resources.mem_gb,
                               slurm_partition=resources.partition,
                               slurm_array_parallelism=resources.array_parallelism,
                               slurm_setup=list(setup), local_setup=list(setup))
    return executor


def job_states(cluster: str, folder: str, job_ids: Sequence[str]) -> Dict[str, str]:
    """What ``cluster`` says of each job: "pending", "running", "ended" (whatever the outcome) or "unknown" (SLURM's
    accounting did not answer). A ``debug`` job ran inside the command that submitted it: it has ended."""
    if cluster == "slurm":
        return slurm_states(folder, job_ids)
    if cluster == "local":
        return {job_id: "running" if process_alive(int(job_id)) else "ended" for job_id in job_ids}
    return {job_id: "ended" for job_id in job_ids}


def slurm_states(folder: str, job_ids: Sequence[str]) -> Dict[str, str]:
    """One ``sacct`` call (through submitit's watcher) for all of ``job_ids``."""
    jobs = [submitit.SlurmJob(folder, job_id) for job_id in job_ids]
    watcher = submitit.SlurmJob.watcher
    watcher.update()
    states = {}
    for job in jobs:
        state = (watcher.get_state(job.job_id, mode="cache").split() or ["UNKNOWN"])[0].upper()
        states[job.job_id] = ("unknown" if state == "UNKNOWN" else "pending" if state in SLURM_WAITING
                              else "running" if state in SLURM_RUNNING else "ended")
    return states


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` (a local job's controller) still runs; a finished child of this process is reaped."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        return reaped == 0
    except ChildProcessError:  # not this process's child
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def log_tail(folder: str, job_id: str, lines: int = 5) -> List[str]:
    """The last non-blank ``lines`` of a job's error log (of its output log when the error log is empty)."""
    paths = JobPaths(folder, job_id=job_id)
    for path in (paths.stderr, paths.stdout):
        if path.is_file():
            text = [line.rstrip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
            if text:
                return text[-lines:]
    return []
