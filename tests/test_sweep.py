"""Cluster sweeps (``python -m cluster.sweep``): one submitit job per (experiment, repeat), aggregated exactly as
one process would; interrupted jobs requeued or resubmitted from their checkpoints; SLURM's sbatch script.

The jobs run on submitit's local executor (one process each) on tiny CIFAR-10; SLURM is replaced by stand-ins for
``sbatch``, ``srun`` and ``sacct`` on the PATH, so that submitit renders and "submits" its own sbatch script.
"""
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import submitit
import torch
from submitit.core.utils import DelayedSubmission

import iBatchLearn
from helpers import REPO_ROOT, assert_same_outputs, computed, outputs
from cluster import packing, sweep
from cluster.jobs import Sweep, SweepJob
from experiment.config import read_config
from utils.runtime import torch_threads

EXPERIMENTS = ("sweep_sparse_wt0.01", "sweep_sparse_wt0.4")
JOB_THREADS = 1
"""CPU threads of each job of the interrupted sweep: 2 jobs at a time (--jobs_per_device 2) on 2 cores."""


def driver_flags(dataroot, *extra):
    """2 sparsity weights x 2 repeats x 2 tasks x 1 epoch; a checkpoint after every epoch and task."""
    return ["--gpuid", "-1", "--dataset", "CIFAR10", "--dataroot", str(dataroot), "--first_split_size", "5",
            "--other_split_size", "5", "--schedule", "1", "--batch_size", "10", "--repeat", "2", "--sparse_wt",
            "0.01", "0.4", "--grow_network", "-e", "0.01", "--print_freq", "1000", "--exp_name", "sweep",
            "--checkpoint_interval", "0", *extra]


def run_sweep(*argv):
    """``cluster.sweep.main(argv)`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = sweep.main([str(arg) for arg in argv])
    return status, out.getvalue(), err.getvalue()


def wait_until_settled(sweep_dir: Path, timeout: float = 600) -> dict:
    """Each job's state once none is running or pending."""
    deadline = time.monotonic() + timeout
    while True:
        states = Sweep.load(str(sweep_dir)).states()
        if not {"running", "pending"} & set(states.values()):
            return states
        assert time.monotonic() < deadline, states
        time.sleep(0.2)


def job_log(sweep_dir: Path, name: str) -> str:
    """A job's error log (where its ``logging`` lines go), of its latest submission."""
    job = next(job for job in Sweep.load(str(sweep_dir)).jobs if job.name == name)
    return (sweep_dir / "logs" / f"{job.job_id}_0_log.err").read_text()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cifar10_root):
    """The driver with the sweep's flags, one process for the whole sweep, each job alone with the threads a packed
    job has (``JOB_THREADS``): its folder and printed tables."""
    directory = tmp_path_factory.mktemp("one_process")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), torch_threads(JOB_THREADS):
        patch.chdir(directory)
        assert iBatchLearn.main(driver_flags(cifar10_root)) == 0
    return directory, out.getvalue()


def signal_after_first_task(sweep_dir: Path, signals: dict, timeout: float = 300) -> dict:
    """Send ``signals[experiment, repeat]`` to that job's process once it has checkpointed its first task (the
    process id is in its lock file); returns the latest checkpoint each had when signalled."""
    pending, seen = dict(signals), {}
    deadline = time.monotonic() + timeout
    while pending:
        for (experiment, repeat), signum in list(pending.items()):
            job = sweep_dir / "jobs" / experiment / f"run{repeat}"
            if (job / "checkpoints" / "checkpoint-000002.pth").exists():
                pid = int((job / "run.lock").read_text().split()[1])
                os.kill(pid, signum)
                seen[experiment, repeat] = max(os.listdir(job / "checkpoints"))
                del pending[experiment, repeat]
        assert time.monotonic() < deadline, f"no checkpoint in time: {pending}"
        time.sleep(0.005)
    return seen


def training_processes(sweep_dir: Path) -> int:
    """Jobs training now: their lock files ``run.lock`` name a live process (a killed job leaves its lock)."""
    alive = 0
    for lock in (sweep_dir / "jobs").glob("*/run*/run.lock"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            os.kill(int(lock.read_text().split()[1]), 0)
            alive += 1
    return alive


class Sampler(threading.Thread):
    """Samples a sweep until stopped: the most jobs training at once (``training_processes``) and every job state
    seen."""

    def __init__(self, sweep_dir: Path):
        super().__init__(daemon=True)
        self.sweep_dir, self.stopped = sweep_dir, threading.Event()
        self.most_training, self.states = 0, set()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.most_training = max(self.most_training, training_processes(self.sweep_dir))
            self.states.update(Sweep.load(str(self.sweep_dir)).states().values())
            time.sleep(0.02)

    def stop(self) -> "Sampler":
        self.stopped.set()
        self.join()
        return self


@pytest.fixture(scope="module")
def interrupted_sweep(tmp_path_factory, cifar10_root):
    """The 2 x 2 sweep on the local executor, 2 jobs at a time (``--jobs_per_device 2``, 2 cores: one thread each),
    two of its jobs interrupted after their first task: repeat 0 of sparse_wt 0.01 pre-empted (SIGUSR2, the signal
    submitit has SLURM send before a pre-emption or the time limit: submitit requeues it), repeat 1 killed (SIGKILL:
    it fails; the same command, given again, resubmits it).

    Returns the working directory, what ``--status`` and ``--collect`` said while the killed job was down, the
    resubmission's output, the final ``--collect``'s table, the checkpoint each job had when interrupted and what
    a ``Sampler`` saw until the killed job was down.
    """
    work = tmp_path_factory.mktemp("cluster")
    submit = [*driver_flags(cifar10_root), "--cluster", "local", "--sweep_dir", "sw", "--jobs_per_device", "2"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setattr(sweep, "available_cores", lambda: 2)
        status, submitted, err = run_sweep(*submit)
        assert status == 0, err
        sampler = Sampler(work / "sw")
        sampler.start()
        interrupted_at = signal_after_first_task(work / "sw", {(EXPERIMENTS[0], 0): signal.SIGUSR2,
                                                               (EXPERIMENTS[0], 1): signal.SIGKILL})
        states_while_down = wait_until_settled(work / "sw")
        sampler.stop()
        _, status_while_down, _ = run_sweep("--status", "sw")
        collect_while_down = run_sweep("--collect", "sw")
        final_written_while_down = {experiment: (work / "results" / experiment / "output_final.json").exists()
                                    for experiment in EXPERIMENTS}
        status, resubmitted, err = run_sweep(*submit)
        assert status == 0, err
        assert set(wait_until_settled(work / "sw").values()) == {"done"}
        status, table, err = run_sweep("--collect", "sw")
        assert status == 0, err
    return {"work": work, "states_while_down": states_while_down, "status_while_down": status_while_down,
            "collect_while_down": collect_while_down, "final_written_while_down": final_written_while_down,
            "resubmitted": resubmitted, "table": table, "interrupted_at": interrupted_at, "submitted": submitted,
            "sampler": sampler}


def test_packed_jobs_run_at_most_k_at_a_time_and_the_others_wait_pending(interrupted_sweep):
    sampler = interrupted_sweep["sampler"]
    assert sampler.most_training == 2 and "pending" in sampler.states
    assert "at most 2 job(s) at a time on the CPU (--jobs_per_device), 1 CPU thread(s) each" in (
        interrupted_sweep["submitted"])
    log = job_log(interrupted_sweep["work"] / "sw", f"{EXPERIMENTS[1]} run 0")
    assert "running in slot " in log and "of the CPU (1 thread(s))" in log


def test_a_sweep_ends_bit_identical_to_one_process(interrupted_sweep, reference):
    directory, table = reference
    work = interrupted_sweep["work"]
    assert_same_outputs(outputs(directory), outputs(work))
    assert interrupted_sweep["table"] == table and all(experiment in table for experiment in EXPERIMENTS)
    assert sorted(os.listdir(work / "saves")) == sorted(os.listdir(directory / "saves")) == list(EXPERIMENTS)
    for experiment in EXPERIMENTS:  # no checkpoint or lock left: each job's folder holds its record only
        for repeat in (0, 1):
            job = work / "sw" / "jobs" / experiment / f"run{repeat}"
            assert os.listdir(job) == ["done.json"]
            assert computed(json.loads((job / "done.json").read_text())) == computed(json.loads(
                (directory / "results" / experiment / f"output_run{repeat}.json").read_text()))


def test_the_sweep_record_holds_the_flags_and_every_submission(interrupted_sweep):
    record = Sweep.load(str(interrupted_sweep["work"] / "sw"))
    assert record.flags["sparse_wt"] == [0.01, 0.4] and record.flags["repeat"] == 2
    assert [(job.experiment, job.repeat) for job in record.jobs] == [(e, r) for e in EXPERIMENTS for r in (0, 1)]
    assert [len(submission["jobs"]) for submission in record.submissions] == [4, 1]
    assert record.submissions[0]["packing"] == {"directory": str(interrupted_sweep["work"] / "sw" / "slots"),
                                                "devices": [], "jobs_per_device": 2, "threads": JOB_THREADS}
    assert list(record.submissions[1]["jobs"]) == [f"{EXPERIMENTS[0]} run 1"]
    assert all(job.cluster == "local" and job.job_id for job in record.jobs)


def resumed_from(log: str) -> Path:
    """The checkpoint a job's log says it continued from (it must say so once)."""
    assert log.count("resuming from ") == 1, log
    return Path(log.split("resuming from ")[1].split(":")[0])


def test_a_preempted_job_is_requeued_and_continues_from_its_checkpoint(interrupted_sweep):
    sweep_dir = interrupted_sweep["work"] / "sw"
    log = job_log(sweep_dir, f"{EXPERIMENTS[0]} run 0")
    assert "requeued (1 of at most 3)" in log
    checkpoint = resumed_from(log.split("requeued (1 of at most 3)")[1])
    assert checkpoint.parent == sweep_dir / "jobs" / EXPERIMENTS[0] / "run0" / "checkpoints"
    assert checkpoint.name >= interrupted_sweep["interrupted_at"][EXPERIMENTS[0], 0]
    assert interrupted_sweep["states_while_down"][f"{EXPERIMENTS[0]} run 0"] == "done"  # requeued, not failed


def test_a_killed_job_is_reported_failed_and_resubmitted_from_its_checkpoint(interrupted_sweep):
    states = interrupted_sweep["states_while_down"]
    assert states == {f"{EXPERIMENTS[0]} run 0": "done", f"{EXPERIMENTS[0]} run 1": "failed",
                      f"{EXPERIMENTS[1]} run 0": "done", f"{EXPERIMENTS[1]} run 1": "done"}
    report = interrupted_sweep["status_while_down"]
    assert "4 job(s): 3 done, 1 failed" in report and f"failed   {EXPERIMENTS[0]} run 1 (local job " in report
    assert "resubmits the failed jobs" in report
    assert interrupted_sweep["resubmitted"].startswith(f"submitted 1 job(s) to local: {EXPERIMENTS[0]} run 1")
    sweep_dir = interrupted_sweep["work"] / "sw"
    checkpoint = resumed_from(job_log(sweep_dir, f"{EXPERIMENTS[0]} run 1"))
    assert checkpoint.parent == sweep_dir / "jobs" / EXPERIMENTS[0] / "run1" / "checkpoints"
    assert checkpoint.name >= interrupted_sweep["interrupted_at"][EXPERIMENTS[0], 1]


def test_collect_refuses_an_experiment_with_a_missing_repeat(interrupted_sweep):
    status, out, err = interrupted_sweep["collect_while_down"]
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert f"{EXPERIMENTS[0]} (repeat 1 failed)" in err
    assert interrupted_sweep["final_written_while_down"] == {EXPERIMENTS[0]: False, EXPERIMENTS[1]: True}
    assert f"{EXPERIMENTS[1]} (2 runs)" in out and EXPERIMENTS[0] not in out


def test_status_reports_a_failed_job_with_the_end_of_its_log(workdir, cifar10_root):
    status, _, err = run_sweep(*driver_flags(workdir / "no_data", "--repeat", "1", "--sparse_wt", "0.4"),
                               "--cluster", "local", "--sweep_dir", "sw")
    assert status == 0, err
    assert wait_until_settled(workdir / "sw") == {f"{EXPERIMENTS[1]} run 0": "failed"}
    status, report, _ = run_sweep("--status", "sw")
    assert status == 0 and f"failed   {EXPERIMENTS[1]} run 0" in report
    last_line = report.splitlines()[-2]  # the last line of its log, above the advice to resubmit
    assert last_line.startswith("           | utils.errors.UserError: CIFAR10 not found: put cifar-10-batches-py/")
    assert f"under {workdir / 'no_data'}/" in last_line
    status, _, err = run_sweep("--collect", "sw")
    assert status == 2 and f"{EXPERIMENTS[1]} (repeat 0 failed)" in err
    assert not (workdir / "results" / EXPERIMENTS[1] / "output_final.json").exists()


def test_the_debug_cluster_runs_the_jobs_in_this_process(workdir, cifar10_root, reference):
    with torch_threads(JOB_THREADS):
        status, out, err = run_sweep(*driver_flags(cifar10_root, "--repeat", "1", "--sparse_wt", "0.4"),
                                     "--cluster", "debug", "--sweep_dir", "sw")
    assert status == 0, err
    assert Sweep.load("sw").states() == {f"{EXPERIMENTS[1]} run 0": "done"}
    run = f"results/{EXPERIMENTS[1]}/output_run0.json"
    assert computed(json.loads((workdir / run).read_text())) == computed(json.loads((reference[0] / run).read_text()))


# ------------------------------------------------------------------ jobs packed on devices


@pytest.mark.parametrize("argv, message", [
    (["--cluster", "local", "--jobs_per_device", "0"], "error: --jobs_per_device must be 1 or more, got 0\n"),
    (["--cluster", "local", "--jobs_per_device", "-2"], "error: --jobs_per_device must be 1 or more, got -2\n"),
    (["--cluster", "debug", "--jobs_per_device", "2"], "error: --jobs_per_device packs the jobs of --cluster local "),
])
def test_a_bad_jobs_per_device_is_one_line_and_writes_nothing(workdir, cifar10_root, argv, message):
    status, out, err = run_sweep(*driver_flags(cifar10_root), "--sweep_dir", "sw", *argv)
    assert status == 2 and err.startswith(message) and err.count("\n") == 1
    assert os.listdir(workdir) == []


def test_jobs_spread_over_the_devices_before_sharing_one(tmp_path, monkeypatch):
    """4 GPUs seen, 2 jobs a device, 16 cores: 8 slots, slot 0 of each device first; a ninth job waits for a free
    slot and takes the one freed."""
    monkeypatch.setattr(packing, "POLL_SECONDS", 0.01)
    plan = packing.plan_packing(str(tmp_path), 2, "local", cuda_devices=4, cores=16)
    assert (plan.devices, plan.jobs_per_device, plan.threads) == ((0, 1, 2, 3), 2, 2)
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(packing.held_slot(plan, f"job{index}")) for index in range(8)]
        assert held == [0, 1, 2, 3, 0, 1, 2, 3]
        assert packing.slot_holders(plan.directory) == {f"job{index}" for index in range(8)}
        got = []
        ninth = threading.Thread(target=lambda: got.append(hold_briefly(plan, "job8")))
        ninth.start()
        time.sleep(0.2)
        assert got == [] and ninth.is_alive()
    ninth.join(timeout=10)
    assert got == [0]  # the first slot in the order, freed with the others
    assert packing.slot_holders(plan.directory) == set()


def hold_briefly(plan, holder: str):
    with packing.held_slot(plan, holder) as device:
        return device


def test_a_packed_job_runs_on_its_slots_device_with_its_share_of_the_cores(tmp_path):
    config = read_config(["--gpuid", "0"])
    threads = torch.get_num_threads()
    on_gpus = packing.plan_packing(str(tmp_path / "gpus"), 3, "local", cuda_devices=2, cores=12)
    with packing.packed(on_gpus, config, "a") as first, packing.packed(on_gpus, config, "b") as second:
        assert (first.run.gpuid, second.run.gpuid, torch.get_num_threads()) == ([0], [1], 2)  # 12 cores / 6 jobs
        assert first.flags == config.flags and first.model == config.model
    on_cpu = packing.plan_packing(str(tmp_path / "cpu"), 2, "local", cuda_devices=0, cores=3)
    with packing.packed(on_cpu, config, "a") as first:
        assert first is config and torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads
    with packing.packed(None, config, "a") as unpacked:
        assert unpacked is config and torch.get_num_threads() == threads


def test_defaults_and_clusters_that_do_not_pack():
    on_cpu, on_gpu = (packing.plan_packing("sw", None, "local", devices, 2) for devices in (0, 1))
    assert (on_cpu.jobs_per_device, on_cpu.threads) == (2, 1)  # measured: README, On a cluster
    assert (on_gpu.jobs_per_device, on_gpu.threads, on_gpu.devices) == (1, 2, (0,))  # until the GPU check measures
    assert packing.plan_packing("sw", None, "slurm", 1, 2) is None
    assert packing.plan_packing("sw", 5, "local", 0, 2).threads == 1  # never fewer than one


@pytest.mark.parametrize("environ, seen", [({"CUDA_VISIBLE_DEVICES": "2,3"}, "2,3"), ({}, "every device")])
def test_a_local_job_sees_the_devices_the_sweep_command_saw(environ, seen):
    line = packing.visibility(environ)
    shell = subprocess.run(["bash", "-c", f'{line} && echo "${{CUDA_VISIBLE_DEVICES-every device}}"'],
                           env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"}, capture_output=True, text=True)
    assert shell.stdout.strip() == seen


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch`` (answers job ids 4242, 4243, ...), ``srun`` and ``sacct`` (prints ``bin/sacct.txt``) on the
    PATH; submitit's shared SLURM watcher forgotten afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": 'n=$(cat "$0.next" 2>/dev/null || echo 4242); echo $((n + 1)) > "$0.next"; '
                  'echo "Submitted batch job $n"',
        "srun": "exit 0",
        "sacct": 'cat "$0.txt"',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    yield bin_dir
    submitit.SlurmJob.watcher.clear()


SLURM_RESOURCES = ["--partition", "gpu", "--time", "90", "--gpus_per_job", "1", "--cpus_per_job", "3", "--mem_gb",
                   "12", "--array_parallelism", "2"]


def test_slurm_submission_is_one_array_of_sbatch(workdir, fake_slurm, cifar10_root):
    status, out, err = run_sweep(*driver_flags(cifar10_root), "--cluster", "slurm", "--sweep_dir", "sw",
                                 *SLURM_RESOURCES)
    assert status == 0, err
    assert "submitted 4 job(s) to slurm" in out
    logs = workdir / "sw" / "logs"
    script = (logs / "4242_submission.sh").read_text().splitlines()
    for line in ("#SBATCH --array=0-3%2", "#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=3", "#SBATCH --mem=12GB", "#SBATCH --job-name=cacl-sweep",
                 "#SBATCH --signal=USR2@90", f"export PYTHONPATH={REPO_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"):
        assert line in script
    command = script[-1].split()
    assert command[0] == "srun" and command[-5:] == [sys.executable, "-u", "-m", "submitit.core._submit", str(logs)]
    expected = [(0, 0), (0, 1), (1, 0), (1, 1)]
    for index, (experiment, repeat) in enumerate(expected):
        job = DelayedSubmission.load(logs / f"4242_{index}_submitted.pkl").function
        assert isinstance(job, SweepJob) and (job.experiment_index, job.repeat) == (experiment, repeat)
        assert job.directory == str(workdir / "sw" / "jobs" / EXPERIMENTS[experiment] / f"run{repeat}")
        assert job.max_requeues == 3 and job.requeues == 0
        assert job.config == read_config(driver_flags(cifar10_root))
    assert [job.job_id for job in Sweep.load("sw").jobs] == [f"4242_{index}" for index in range(4)]


def test_slurm_states_and_a_resubmission_of_the_failed_jobs(workdir, fake_slurm, cifar10_root):
    submit = [*driver_flags(cifar10_root), "--cluster", "slurm", "--sweep_dir", "sw", *SLURM_RESOURCES]
    assert run_sweep(*submit)[0] == 0
    (fake_slurm / "sacct.txt").write_text("JobID|State|NodeList\n4242_0|RUNNING|node1\n4242_1|PENDING|None\n"
                                          "4242_2|FAILED|node2\n4242_3|CANCELLED by 1000|node3\n")
    (workdir / "sw" / "logs" / "4242_2_0_log.err").write_text("loading\nRuntimeError: CUDA out of memory\n")
    status, report, _ = run_sweep("--status", "sw")
    assert status == 0 and "4 job(s): 1 running, 1 pending, 2 failed" in report
    assert f"running  {EXPERIMENTS[0]} run 0 (slurm job 4242_0)" in report
    assert f"pending  {EXPERIMENTS[0]} run 1 (slurm job 4242_1)" in report
    assert "| RuntimeError: CUDA out of memory" in report
    status, out, _ = run_sweep(*submit)
    assert status == 0 and "submitted 2 job(s) to slurm" in out
    assert "#SBATCH --array=0-1%2" in (workdir / "sw" / "logs" / "4243_submission.sh").read_text()
    assert [job.job_id for job in Sweep.load("sw").jobs] == ["4242_0", "4242_1", "4243_0", "4243_1"]


def test_a_job_is_requeued_at_most_max_requeues_times():
    job = SweepJob(read_config([]), 0, 1, "sw/jobs/x/run1", ".", max_requeues=2)
    requeued = job.checkpoint()
    assert requeued.function.requeues == 1 and requeued.function.repeat == 1 and job.requeues == 0
    assert requeued.function.checkpoint().function.requeues == 2
    assert requeued.function.checkpoint().function.checkpoint() is None


# ------------------------------------------------------------------ the benchmarks' sweep scripts

BENCHMARKS = {"cifar100": "CNet_CIFAR100_finalmodel", "miniimagenet": "miniImageNet_final",
              "5sequencedataset": "5sequencedataset"}


def script_command(script: str, cwd: Path, *argv) -> list:
    """The command a script runs, as it would run it (its Python replaced by ``echo``)."""
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script), *argv], cwd=cwd, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "CACL_PYTHON": "echo"})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_a_sweep_script_submits_its_train_scripts_settings(tmp_path, benchmark):
    train = script_command(f"{benchmark}_train.sh", tmp_path)
    submit = script_command(f"{benchmark}_sweep.sh", tmp_path, "--partition", "gpu", "--time", "600")
    assert train[0] == str(REPO_ROOT / "iBatchLearn.py")
    assert submit == ["-m", "cluster.sweep", *train[1:], "--cluster", "slurm", "--sweep_dir",
                      f"sweeps/{BENCHMARKS[benchmark]}", "--partition", "gpu", "--time", "600"]


def test_the_cifar100_sweep_script_submits_its_six_runs_as_one_array(tmp_path, fake_slurm):
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "cifar100_sweep.sh"), "--partition", "gpu"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "CACL_PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    sweep_dir = tmp_path / "sweeps" / BENCHMARKS["cifar100"]
    script = (sweep_dir / "logs" / "4242_submission.sh").read_text().splitlines()
    for line in ("#SBATCH --array=0-5%6", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=1200", "#SBATCH --mem=20GB"):
        assert line in script
    assert [(job.experiment, job.repeat) for job in Sweep.load(str(sweep_dir)).jobs] == [
        (f"{BENCHMARKS['cifar100']}_sparse_wt{weight}", repeat) for weight in (0.1, 0.4) for repeat in range(3)]


def test_a_submission_the_scheduler_refuses_is_one_line_and_can_be_given_again(workdir, fake_slurm, cifar10_root):
    sbatch = (fake_slurm / "sbatch").read_text()
    (fake_slurm / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n")
    submit = [*driver_flags(cifar10_root), "--cluster", "slurm", "--sweep_dir", "sw", *SLURM_RESOURCES]
    status, _, err = run_sweep(*submit)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("error: --cluster slurm: the submission was refused: sbatch: error: invalid partition")
    assert set(Sweep.load("sw").states().values()) == {"new"}
    (fake_slurm / "sbatch").write_text(sbatch)
    status, out, _ = run_sweep(*submit)
    assert status == 0 and "submitted 4 job(s) to slurm" in out
