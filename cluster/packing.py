"""Several jobs of a local sweep on each device: ``cacl-sweep --cluster local --jobs_per_device K``.

Every job of a local sweep starts at once as a process (submitit's local executor), then waits for one of the
sweep's slots: ``K`` per device, each a lock file ``<sweep_dir>/slots/<device>-<slot>.lock`` that the job holds
(``fcntl.flock``) while it runs and that the system releases when its process ends, however it ends (done, failed,
killed, requeued). A job takes the first free slot in ``slot_order``: every device's first slot, then every device's
second..., so that jobs spread over the devices before they share one. Holding a slot, the job runs on its device
(``--gpuid``: the device's index among those the sweep command saw, which every job sees too) with
``threads_per_job(cores, K × devices)`` CPU threads; on the CPU, the one device, K jobs at a time share the cores.

While it waits a job is ``pending`` (its slot file names the job that holds it, for ``--status``).
"""
import fcntl
import logging
import os
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator, List, Mapping, Optional, Set, Tuple

from experiment.config import Config
from utils.errors import UserError
from utils.runtime import threads_per_job, torch_threads

log = logging.getLogger(__name__)

SLOTS = "slots"
"""The folder of a sweep's slots."""
DEFAULT_JOBS_PER_DEVICE = {"cpu": 2, "cuda": 1}
"""``--jobs_per_device`` when not given. CPU: 2, measured with ``benchmarks.packed`` on this project's 2-core machine
(README, *On a cluster*): two jobs of one thread each trained 818 images/s together, one job of two threads 703
(1.16×), and on a machine busy with other work two one-thread jobs kept their pace where one two-thread job lost most
of it. CUDA: 1 until the GPU check measures packed jobs (its ``packed`` field)."""
POLL_SECONDS = 1.0
"""How often a waiting job looks for a free slot."""


@dataclass(frozen=True)
class Packing:
    """How a local sweep's jobs share this machine: ``jobs_per_device`` at a time on each of ``devices`` (CUDA
    device indices; empty: the CPU), each with ``threads`` CPU threads, the slots' lock files in ``directory``."""

    directory: str
    devices: Tuple[int, ...]
    jobs_per_device: int
    threads: int

    def slot_order(self) -> List[Tuple[Optional[int], int]]:
        """``(device, slot)`` in the order a starting job tries them (device None: the CPU): slot 0 of every device,
        then slot 1 of every device, ..."""
        devices = self.devices or (None,)
        return [(device, slot) for slot in range(self.jobs_per_device) for device in devices]

    def slot_file(self, device: Optional[int], slot: int) -> str:
        return os.path.join(self.directory, f"{'cpu' if device is None else f'cuda{device}'}-{slot}.lock")


def plan_packing(sweep_dir: str, jobs_per_device: Optional[int], cluster: str, cuda_devices: int,
                 cores: int) -> Optional[Packing]:
    """The packing of a sweep's jobs (None off the ``local`` cluster): ``cuda_devices`` devices (0: the CPU),
    ``jobs_per_device`` (None: ``DEFAULT_JOBS_PER_DEVICE`` of the device type) at a time on each, the machine's
    ``cores`` divided among all the jobs running at once. A ``jobs_per_device`` below 1, or given for another
    cluster, is a ``UserError``."""
    if jobs_per_device is not None and cluster != "local":
        raise UserError(f"--jobs_per_device packs the jobs of --cluster local on this machine's devices: leave "
                        f"it out for --cluster {cluster}")
    if jobs_per_device is not None and jobs_per_device < 1:
        raise UserError(f"--jobs_per_device must be 1 or more, got {jobs_per_device}")
    if cluster != "local":
        return None
    count = jobs_per_device or DEFAULT_JOBS_PER_DEVICE["cuda" if cuda_devices else "cpu"]
    return Packing(os.path.join(sweep_dir, SLOTS), tuple(range(cuda_devices)), count,
                   threads_per_job(cores, count * max(1, cuda_devices)))


def visibility(environ: Mapping[str, str]) -> str:
    """The shell line that shows a local job the CUDA devices the sweep command sees (submitit's local executor
    narrows ``CUDA_VISIBLE_DEVICES`` to the first ``--gpus_per_job``)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return f"export CUDA_VISIBLE_DEVICES={shlex.quote(environ['CUDA_VISIBLE_DEVICES'])}"
    return "unset CUDA_VISIBLE_DEVICES"


@contextmanager
def held_slot(packing: Packing, holder: str) -> Iterator[Optional[int]]:
    """Wait for a free slot of ``packing`` and hold it for the block, its file naming ``holder``; yields its device
    (None: the CPU)."""
    os.makedirs(packing.directory, exist_ok=True)
    waited = False
    while True:
        for device, slot in packing.slot_order():
            stream = open(packing.slot_file(device, slot), "a+", encoding="utf-8")
            try:
                fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                stream.close()
                continue
            with stream:
                stream.truncate(0)
                stream.write(holder)
                stream.flush()
                log.info("running in slot %d of %s (%d thread(s))", slot,
                         "the CPU" if device is None else f"cuda:{device}", packing.threads)
                yield device
            return
        if not waited:
            log.info("waiting for one of the %d slot(s) of %s (--jobs_per_device %d)",
                     len(packing.slot_order()), packing.directory, packing.jobs_per_device)
            waited = True
        time.sleep(POLL_SECONDS)


@contextmanager
def packed(packing: Optional[Packing], config: Config, holder: str) -> Iterator[Config]:
    """The block runs the job ``holder`` as ``packing`` says (nothing changes without one): in a slot, with its
    CPU threads; yields ``config`` with ``--gpuid`` the slot's device on CUDA."""
    if packing is None:
        yield config
        return
    with held_slot(packing, holder) as device, torch_threads(packing.threads):
        yield config if device is None else replace(config, run=replace(config.run, gpuid=[device]))


def slot_holders(directory: str) -> Set[str]:
    """The holders named by the slots of ``directory`` (which must exist) that are held now (by a running job)."""
    holders = set()
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), encoding="utf-8") as stream:
            try:
                fcntl.flock(stream, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                holders.add(stream.read())
    return holders
