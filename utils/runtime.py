"""Where and how reproducibly a run executes: the device, the random seeds and the random generators' state."""
import logging
import random
from contextlib import contextmanager
from typing import Iterator, Sequence

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
