"""Training jobs packed on one device: the aggregate training throughput of K processes training at once
(``python -m benchmarks.packed --device cpu|cuda --jobs 1 2 4 [--seconds S] [--rounds R]``; the GPU check's
``packed`` step).

For each K, K worker processes are started afresh; each trains ``Net_SVD`` as a first task's epochs train it (the
CACL loss, batches of 64 CIFAR-100-shaped images drawn and augmented on the device by a ``TaskLoader``) with
``cores // K`` CPU threads, as ``cacl-sweep --cluster local --jobs_per_device K`` gives a sweep's jobs
(``utils.runtime.threads_per_job``). After warm-up steps all start together and train for ``--seconds``; the
aggregate is the images all of them trained divided by the wall time from their common start to the last one's end
(each job's own rate is recorded too). On CUDA, ``mps_daemon`` runs the same under the Multi-Process Service where
this machine lets a user start it.
"""
import argparse
import contextlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Dict, Iterator, Optional, Sequence, Tuple

import torch

from benchmarks.benchmark import BATCH_SIZE, Speed, svd_agent, synchronize, synthetic_task
from dataloaders import TaskLoader
from utils.files import atomic_json_dump
from utils.runtime import available_cores, subnormals_flushed, threads_per_job

TRAIN_IMAGES = 20 * BATCH_SIZE
"""Images of each worker's task (its epochs repeat over them)."""
WARMUP_STEPS = 3
START_TIMEOUT = 300
"""Seconds the workers may take to start and warm up."""


def worker(device_name: str, threads: int, warmup_steps: int, seconds: float, start, results) -> None:
    """One packed job: ``warmup_steps`` steps, wait for the others (``start``, a barrier), train for ``seconds``; puts
    ``(start time, end time, images)`` (``time.perf_counter``, one clock for every process of the machine) or
    ``("error", traceback)`` on ``results``."""
    try:
        torch.set_num_threads(threads)
        device = torch.device(device_name)
        with subnormals_flushed(device):
            torch.manual_seed(0)
            agent = svd_agent(device, Speed())
            agent.begin_task("1")
            agent.model.train()
            loader = Batches(device)
            for _ in range(warmup_steps):
                agent.observe(*loader.next())
            synchronize(device)
            start.wait(timeout=START_TIMEOUT)
            began, images = time.perf_counter(), 0
            while time.perf_counter() - began < seconds:
                batch = loader.next()
                agent.observe(*batch)
                images += len(batch[1])
            synchronize(device)
            results.put((began, time.perf_counter(), images))
    except BaseException:  # reported to the parent, which raises it
        results.put(("error", traceback.format_exc()))
        raise


class Batches:
    """Batches of one synthetic CIFAR-100-shaped task, epoch after epoch (a ``TaskLoader``'s)."""

    def __init__(self, device: torch.device):
        self.loader = TaskLoader(synthetic_task("1", TRAIN_IMAGES, augment=True, seed=0), BATCH_SIZE, shuffle=True,
                             device=device, generator=torch.Generator().manual_seed(0))
        self.batches = iter(self.loader)

    def next(self) -> Tuple[torch.Tensor, torch.Tensor, Sequence[str]]:
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)


def packed_rate(device_name: str, jobs: int, seconds: float, cores: int,
                warmup_steps: int = WARMUP_STEPS) -> dict:
    """``jobs`` workers training at once on ``device_name`` for ``seconds`` after ``warmup_steps``: ``images_per_s``
    (aggregate), ``threads`` (each's), ``per_job`` (each's images per second)."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    start, results = context.Barrier(jobs), context.Queue()
    threads = threads_per_job(cores, jobs)
    processes = [context.Process(target=worker, args=(device_name, threads, warmup_steps, seconds, start, results),
                                 daemon=True) for _ in range(jobs)]
    for process in processes:
        process.start()
    found = []
    try:
        for _ in processes:
            found.append(results.get(timeout=START_TIMEOUT + 10 * seconds))
            if found[-1][0] == "error":
                start.abort()  # the others stop waiting for it
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    errors = [item[1] for item in found if item[0] == "error"]
    if errors:
        raise RuntimeError(f"a packed job failed:\n{errors[0]}")
    began, ended = min(item[0] for item in found), max(item[1] for item in found)
    return {"images_per_s": round(sum(item[2] for item in found) / (ended - began), 1), "threads": threads,
            "per_job": [round(images / (end - begin), 1) for begin, end, images in found]}


def packed_rates(device_name: str, jobs: Sequence[int], seconds: float, cores: int,
                 warmup_steps: int = WARMUP_STEPS, rounds: int = 1) -> Dict[str, dict]:
    """``packed_rate`` for each K of ``jobs`` (keys: K as text), the Ks in turn ``rounds`` times and the best
    aggregate of each kept, with ``ratio``: the aggregate over the first K's."""
    rates: Dict[str, dict] = {}
    for _ in range(rounds):
        for count in jobs:
            rate = packed_rate(device_name, count, seconds, cores, warmup_steps)
            if rate["images_per_s"] > rates.get(str(count), {"images_per_s": 0.0})["images_per_s"]:
                rates[str(count)] = rate
    first = rates[str(jobs[0])]["images_per_s"]
    for rate in rates.values():
        rate["ratio"] = round(rate["images_per_s"] / first, 3)
    return rates


@contextlib.contextmanager
def mps_daemon() -> Iterator[Optional[str]]:
    """CUDA's Multi-Process Service for the block: a control daemon of this user (``nvidia-cuda-mps-control -d``)
    with its pipe and log folders in a temporary folder (named in this process's environment, which the workers
    inherit), stopped (``quit``) after the block. Yields None when it runs, else why it does not (the command is
    missing, or refused to start: e.g. a GPU in exclusive mode held by another user's daemon)."""
    command = shutil.which("nvidia-cuda-mps-control")
    if command is None:
        yield "nvidia-cuda-mps-control is not on the PATH"
        return
    with tempfile.TemporaryDirectory(prefix="cacl-mps-") as folder:
        names = {"CUDA_MPS_PIPE_DIRECTORY": os.path.join(folder, "pipe"),
                 "CUDA_MPS_LOG_DIRECTORY": os.path.join(folder, "log")}
        for path in names.values():
            os.makedirs(path)
        previous = {name: os.environ.get(name) for name in names}
        os.environ.update(names)
        try:
            started = subprocess.run([command, "-d"], capture_output=True, text=True, timeout=30)
            if started.returncode != 0:
                yield f"nvidia-cuda-mps-control -d failed: {(started.stderr or started.stdout).strip()}"
                return
            try:
                yield None
            finally:
                subprocess.run([command], input="quit\n", capture_output=True, text=True, timeout=60)
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def format_rates(device: str, rates: Dict[str, dict], seconds: float) -> str:
    lines = [f"packed training jobs on {device} ({seconds:g} s each, Net_SVD task 1, batch {BATCH_SIZE}):",
             f"{'K':>3} {'threads':>8} {'aggregate images/s':>19} {'ratio to first K':>17}  each job's images/s"]
    for jobs, rate in rates.items():
        lines.append(f"{jobs:>3} {rate['threads']:>8} {rate['images_per_s']:19.1f} {rate['ratio']:17.2f}  "
                     + ", ".join(f"{each:.1f}" for each in rate["per_job"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="the K measured, in order")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed seconds of each K")
    parser.add_argument("--rounds", type=int, default=1, help="the Ks measured in turn this many times, the best kept")
    parser.add_argument("--output", default=os.path.join("results", "packed.json"), help="where the JSON goes")
    args = parser.parse_args(argv)
    cores = available_cores()
    rates = packed_rates(args.device, args.jobs, args.seconds, cores, rounds=args.rounds)
    print(format_rates(args.device, rates, args.seconds))
    atomic_json_dump({"device": args.device, "cores": cores, "seconds": args.seconds, "rounds": args.rounds,
                      "eager": rates}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
