"""Where and how reproducibly a run executes: the device and the random seeds."""
import logging
import random
from typing import Sequence

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


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
