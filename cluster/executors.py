"""Where a sweep's jobs run, through submitit: on SLURM as one job array, on this machine (``local``: one process
per job, all started at once, each running when it holds a slot of ``cluster.packing``) or in this process
(``debug``: one after another); and what each job is doing now."""
import os
import shutil
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import submitit
from submitit.core.utils import JobPaths

from utils.errors import UserError
from utils.flags import at_least_zero, flag, positive

POSITIVE, AT_LEAST_ZERO = "must be positive", "must be 0 or more"

CLUSTERS = ("slurm", "local", "debug")

SLURM_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING", "SUSPENDED",
                 "PREEMPTED"}
"""SLURM states (``sacct``) of a job that has not started, or was stopped to be started again."""
SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


@dataclass(frozen=True)
class Resources:
    """What each job asks for: on SLURM all of it; ``local`` uses the time limit (from the start of the job's
    process, its wait for a slot included) and runs the jobs on the devices the submitting command sees
    (``cluster.packing``).

    A job running longer than ``time`` minutes is stopped and requeued (at most ``max_requeues`` times, pre-emptions
    included); at most ``array_parallelism`` jobs of the array run at once.
    """

    partition: Optional[str] = flag(None, "SLURM partition (default: the cluster's)")
    time: int = flag(1200, "minutes a job runs before it is requeued", valid=positive, requirement=POSITIVE)
    gpus_per_job: int = flag(1, "GPUs of a job", valid=at_least_zero, requirement=AT_LEAST_ZERO)
    cpus_per_job: int = flag(2, "CPUs of a job", valid=positive, requirement=POSITIVE)
    mem_gb: float = flag(20.0, "memory per job, GB", valid=positive, requirement=POSITIVE)
    array_parallelism: int = flag(256, "jobs of the array running at once", valid=positive, requirement=POSITIVE)
    max_requeues: int = flag(3, "times a pre-empted or timed-out job is requeued before it is left failed",
                             valid=at_least_zero, requirement=AT_LEAST_ZERO)


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
