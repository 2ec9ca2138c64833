"""Paper-scale sweeps on a cluster: one submitit job per (experiment, repeat) of the driver's sweep.

    python -m cluster.sweep <iBatchLearn.py flags> --cluster slurm|local|debug --sweep_dir DIR [resources]
    python -m cluster.sweep --status DIR
    python -m cluster.sweep --collect DIR

Each job runs what ``python iBatchLearn.py <flags>`` runs for its experiment and repeat: the same seed, the same
``results/<exp>/output_run<r>.json`` and ``runs/``, and the last repeat's model in ``saves/<exp>/``. The submission
command given again resubmits the jobs that failed or were never submitted (they continue from their checkpoints);
``--collect`` writes an experiment's ``output_final.json`` once all its repeats are done.

This module is a command line beside ``iBatchLearn.py``: it reads the driver's flags through the same door
(``experiment.config``), so a sweep is checked whole before any job is submitted.
"""
import argparse
import contextlib
import io
import logging
import os
import shlex
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import List

import torch
from submitit.core.utils import FailedJobError, FailedSubmissionError

from cluster.executors import CLUSTERS, Resources, check_available, make_executor
from cluster.jobs import JOB_STATES, RESUBMITTED, SWEEP_FILE, Sweep, SweepJob
from cluster.packing import Packing, plan_packing, visibility
from experiment.config import Config, read_config
from experiment.training import refuse_to_clobber
from utils.errors import ArgumentParser, UserError, run_command
from utils.flags import add_flags, check_flags, from_flags
from utils.runtime import available_cores

log = logging.getLogger("sweep")

PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
JOB_SETUP = [f"export PYTHONPATH={shlex.quote(PROJECT_ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}"]
"""Shell lines each job runs first: the project importable wherever the job starts."""


def sweep_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m cluster.sweep", allow_abbrev=False,
        description="Submit one job per (experiment, repeat) of the iBatchLearn.py flags given beside (one experiment "
                    "per value of the method's swept flag, e.g. --sparse_wt); "
                    "python iBatchLearn.py --help lists them; follow them with --status, average them with --collect.")
    add = parser.add_argument
    add("--cluster", choices=CLUSTERS, help="slurm: one job array; local: one process per job on this machine, "
                                            "--jobs_per_device at a time; debug: one job after another in this "
                                            "process")
    add("--jobs_per_device", type=int, metavar="K",
        help="--cluster local: at most K jobs at a time on each device (each GPU this command sees, else the CPU), "
             "the CPU cores divided among them (default: 2 on the CPU, 1 on a GPU)")
    add("--sweep_dir", metavar="DIR", help="where the sweep's record (sweep.json), job logs and checkpoints go")
    add("--status", metavar="DIR", help="each job's state; a failed one with the last lines of its log")
    add("--collect", metavar="DIR", help="output_final.json of each experiment whose repeats are all done")
    add_flags(parser.add_argument_group("resources of each job", Resources.__doc__), Resources)
    return parser


def open_sweep(directory: str, config: Config) -> Sweep:
    """The sweep ``directory`` holds, which must be the one of these flags; or a new one, in a new or empty
    directory, that replaces no finished experiment unless ``--overwrite``."""
    if os.path.isfile(os.path.join(directory, SWEEP_FILE)):
        sweep = Sweep.load(directory)
        sweep.check_same(config)
        return sweep
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise UserError(f"--sweep_dir {directory} holds something other than a sweep (no {SWEEP_FILE}): choose a "
                        f"new or empty directory")
    if not config.run.overwrite:
        refuse_to_clobber(config)
    return Sweep.plan(directory, config)


def submit(options: argparse.Namespace, driver_argv: List[str]) -> None:
    """Submit the jobs of the sweep that are not done, running or pending; record them in ``sweep.json``."""
    if not (options.cluster and options.sweep_dir):
        raise UserError("give --cluster slurm|local|debug and --sweep_dir DIR to submit a sweep (or --status DIR, "
                        "--collect DIR)")
    config = read_config(driver_argv)
    if config.searches.debug or config.run.loadmodel:
        raise UserError("a sweep trains: --debug searches and --loadmodel evaluations run in one process "
                        "(python iBatchLearn.py)")
    check_flags(Resources, vars(options))
    resources = from_flags(Resources, vars(options))
    packing = plan_packing(os.path.abspath(options.sweep_dir), options.jobs_per_device, options.cluster,
                           cuda_devices(config) if options.cluster == "local" else 0, available_cores())
    check_available(options.cluster)
    sweep = open_sweep(options.sweep_dir, config)
    states = sweep.states()
    todo = [job for job in sweep.jobs if states[job.name] in RESUBMITTED]
    busy = [f"{job.name} ({states[job.name]})" for job in sweep.jobs if states[job.name] not in (*RESUBMITTED, "done")]
    if busy:
        print(f"left as they are: {', '.join(busy)}")
    if not todo:
        print(f"nothing to submit: every job of {sweep.directory} is done, running or pending (--status follows "
              f"them, --collect averages the finished experiments)")
        return
    sweep.save()  # first: a submission the scheduler refuses leaves a sweep to submit again, not a stray folder
    setup = JOB_SETUP
    if packing is not None:
        os.makedirs(packing.directory, exist_ok=True)
        setup = [*JOB_SETUP, visibility(os.environ)]
    executor = make_executor(options.cluster, sweep.logs, resources, f"cacl-{config.run.exp_name}", setup)
    job_config = sweep.job_config(config)
    handles = submit_jobs(executor, options.cluster, [
        SweepJob(job_config, job.index, job.repeat, sweep.job_directory(job), sweep.workdir, resources.max_requeues,
                 packing=packing)
        for job in todo])
    for job, handle in zip(todo, handles):
        job.cluster, job.job_id = options.cluster, handle.job_id
    sweep.flags = dict(config.flags)
    sweep.submissions.append({"cluster": options.cluster, "resources": asdict(resources),
                              "packing": None if packing is None else asdict(packing),
                              "submitted": datetime.now().isoformat(timespec="seconds"),
                              "jobs": {job.name: job.job_id for job in todo}})
    sweep.save()
    print(f"submitted {len(todo)} job(s) to {options.cluster}: "
          f"{', '.join(f'{job.name} (job {job.job_id})' for job in todo)}")
    if packing is not None:
        print(describe(packing))
    if options.cluster == "debug":
        run_here(handles)
    print(f"follow them with: python -m cluster.sweep --status {sweep.directory}")


def cuda_devices(config: Config) -> int:
    """The CUDA devices a local sweep's jobs spread over: every one this command sees, none with ``--gpuid -1`` or
    without CUDA (the jobs run on the CPU)."""
    return torch.cuda.device_count() if config.run.gpuid[0] >= 0 and torch.cuda.is_available() else 0


def describe(packing: Packing) -> str:
    where = (f"each of {len(packing.devices)} CUDA device(s)" if packing.devices else "the CPU")
    return (f"at most {packing.jobs_per_device} job(s) at a time on {where} (--jobs_per_device), "
            f"{packing.threads} CPU thread(s) each")


def submit_jobs(executor, cluster: str, jobs: List[SweepJob]) -> list:
    """Submit ``jobs`` as one array; the scheduler refusing it (an unknown partition, a time beyond its limit) is a
    one-line error with the scheduler's reason (which submitit would print as well)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return executor.submit_array(jobs)
    except (FailedJobError, FailedSubmissionError) as error:
        reason = " ".join(str(error).split())
        raise UserError(f"--cluster {cluster}: the submission was refused: {reason}") from None


def run_here(handles) -> None:
    """``--cluster debug``: run each job in this process now (a failing job is logged, the next one runs)."""
    for handle in handles:
        try:
            handle.result()
        except Exception:  # the job's own error, already shown by submitit's debug executor
            log.exception("job %s failed", handle.job_id)


def report_status(directory: str) -> None:
    """Each job's state, by name; a failed job's last log lines."""
    sweep = Sweep.load(directory)
    states = sweep.states()
    counts = ", ".join(f"{list(states.values()).count(state)} {state}" for state in JOB_STATES
                       if state in states.values())
    print(f"{sweep.directory}: {len(sweep.jobs)} job(s): {counts}")
    for job in sweep.jobs:
        where = f"{job.cluster} job {job.job_id}" if job.job_id else "never submitted"
        print(f"  {states[job.name]:<8} {job.name} ({where})")
        if states[job.name] == "failed":
            print("\n".join(f"           | {line}" for line in sweep.log_tail(job)))
    if "failed" in states.values():
        print("the sweep's submission command, given again, resubmits the failed jobs: each continues from its "
              "latest checkpoint")


def collect(directory: str) -> None:
    """Print the table of each experiment whose repeats are all done (its ``output_final.json`` written); the
    others are a one-line error."""
    sweep = Sweep.load(directory)
    os.chdir(sweep.workdir)
    tables, missing = sweep.collect()
    if tables:
        print("\n\n".join(tables))
    if missing:
        raise UserError(f"not averaged, repeats missing: {'; '.join(missing)}; see --status {sweep.directory}, "
                        f"resubmit, then collect again")


def main(argv=None) -> int:
    """Submit, report or collect (exit 0); a user error is one line (exit 2); Ctrl-C stops (130)."""
    def run() -> None:
        options, driver_argv = sweep_parser().parse_known_args(argv)
        if options.status or options.collect:
            if driver_argv or options.cluster or options.sweep_dir or (options.status and options.collect):
                raise UserError("--status DIR and --collect DIR take nothing else")
            if options.status:
                report_status(options.status)
            else:
                collect(options.collect)
        else:
            submit(options, driver_argv)

    return run_command(run, stopped="give the same command again to resubmit what did not finish")


if __name__ == "__main__":
    sys.exit(main())
