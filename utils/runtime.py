"""Where and how reproducibly a run executes: the device, subnormal floats on the CPU, the random seeds and the
random generators' state."""
import ctypes
import logging
import os
import random
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from utils.errors import UserError

log = logging.getLogger(__name__)


def pick_device(gpuid: Sequence[int]) -> torch.device:
    """``--gpuid``: -1 is the CPU, an id >= 0 that CUDA device.

    Without CUDA the default id 0 falls back to the CPU with one notice (so the published commands run anywhere);
    any other id names a device this machine does not have, which is a :class:`UserError`, as is an id beyond
    ``torch.cuda.device_count()``.
    """
    if gpuid[0] < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if gpuid[0] > 0:
            raise UserError(f"--gpuid {gpuid[0]}: this machine has no CUDA device; pass --gpuid -1 for the CPU")
        log.warning("CUDA is not available: running on the CPU (pass --gpuid -1 to silence this)")
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if gpuid[0] >= count:
        raise UserError(f"--gpuid {gpuid[0]}: this machine has {count} CUDA device(s), ids 0 to {count - 1}; "
                        "pass one of those, or --gpuid -1 for the CPU")
    if len(gpuid) > 1:
        log.warning("one device is used: cuda:%d", gpuid[0])
    return torch.device(f"cuda:{gpuid[0]}")


def configure_cudnn(reproducible: bool) -> None:
    """``--benchmark`` as published: cuDNN picks deterministic algorithms and does not autotune
    (``deterministic = True``, ``benchmark = False``); without it cuDNN autotunes (``benchmark = True``). Runs are
    seeded either way."""
    torch.backends.cudnn.deterministic = reproducible
    torch.backends.cudnn.benchmark = not reproducible


OPENMP_RUNTIMES = ("libgomp", "libiomp5", "libomp")
"""The OpenMP runtimes torch's CPU builds run their intra-op threads on (GNU's in the PyPI wheels, Intel's or LLVM's
in others); each exports GNU's ``GOMP_parallel``."""

_PARALLEL_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_flushing = False
"""Whether ``subnormals_flushed`` is in force (it does not nest: the outermost block owns the setting)."""


def openmp_runtime() -> Optional[ctypes.CDLL]:
    """The OpenMP runtime this process has loaded for torch (the copy in torch's own folder first), or None: torch
    runs its operators without OpenMP, or this is not Linux (the loaded libraries are read from
    ``/proc/self/maps``)."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return None
    loaded = sorted((path for path in paths if os.path.basename(path).startswith(OPENMP_RUNTIMES)),
                    key=lambda path: not path.startswith(os.path.dirname(torch.__file__)))
    for path in loaded:
        try:
            runtime = ctypes.CDLL(path)
            runtime.GOMP_parallel.argtypes = [_PARALLEL_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            return runtime
        except (OSError, AttributeError):
            continue
    return None


def in_every_cpu_thread(action: Callable[[], None]) -> int:
    """Run ``action`` in the calling thread and in every thread of torch's OpenMP pool (a team as large as the
    pool can be: the machine's cores or ``torch.get_num_threads()``, whichever is larger; threads the pool starts
    later are started by the calling thread and inherit its floating-point settings). Returns the number of
    threads it ran in (1 without an OpenMP runtime found)."""
    runtime = openmp_runtime()
    if runtime is None:
        action()
        return 1
    ran = []

    def each_thread(_data) -> None:
        action()
        ran.append(None)

    callback = _PARALLEL_CALLBACK(each_thread)
    runtime.GOMP_parallel(callback, None, max(torch.get_num_threads(), os.cpu_count() or 1), 0)
    return len(ran)


@contextmanager
def subnormals_flushed(device: torch.device) -> Iterator[None]:
    """On the CPU, subnormal floats (below 1.18·10⁻³⁸ in float32) are treated as 0 inside the block, in every thread
    that runs torch's operators: results that would be subnormal are 0 (x86's flush-to-zero) and subnormal operands
    read as 0 (denormals-are-zero), ``torch.set_flush_denormal(True)``; the setting is turned off again after it.

    Why: an x86 core takes a slow path for every subnormal operand or result (Intel's far slower than AMD's), and a
    training step makes them whenever a network is confident: the cross-entropy's gradient ``softmax − one-hot``
    holds ``exp(z_j − z_max)``, subnormal for a logit ``z_j`` 87 to 104 below the largest, and the backward pass
    carries it through every layer (README, *Speed*). Values that small change no float32 result they are added to,
    so runs are bit-identical where no value is subnormal and agree to the last bit or near it otherwise.

    ``torch.set_flush_denormal`` sets the calling thread's control register only, so it is also run in each thread
    of torch's OpenMP pool (``in_every_cpu_thread``). Nothing happens on other devices, nor on CPUs without the
    setting (``torch.set_flush_denormal`` returns False: e.g. ARM, where subnormals cost no time).
    """
    global _flushing
    if device.type != "cpu" or _flushing or not torch.set_flush_denormal(True):
        yield
        return
    threads = in_every_cpu_thread(lambda: torch.set_flush_denormal(True))
    log.debug("subnormal floats flushed to 0 in %d CPU thread(s)", threads)
    _flushing = True
    try:
        yield
    finally:
        _flushing = False
        in_every_cpu_thread(lambda: torch.set_flush_denormal(False))


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """``torch.set_num_threads(count)`` inside the block, the previous count restored after it (the count changes
    floating-point reductions: it must not leak into later work of the same process)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_job(cores: int, concurrent_jobs: int) -> int:
    """CPU threads of each of ``concurrent_jobs`` processes sharing ``cores`` cores:
    ``max(1, cores // concurrent_jobs)`` (more threads than cores in all makes each process several times slower:
    README, *Speed*)."""
    return max(1, cores // concurrent_jobs)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The state of Python's, NumPy's and torch's generators (every CUDA device's too, once CUDA is in use)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
