"""Where and how reproducibly a run executes: the device and the random seeds."""
import logging
import random
from typing import Sequence

import numpy as np
import torch

from utils.errors import UserError

log = logging.getLogger(__name__)


def pick_device(gpuid: Sequence[int]) -> torch.device:
    """``--gpuid``: -1 is the CPU; a GPU id falls back to the CPU, with one notice, where CUDA is absent."""
    if gpuid[0] < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        log.warning("CUDA is not available: running on the CPU (pass --gpuid -1 to silence this)")
        return torch.device("cpu")
    if gpuid[0] >= torch.cuda.device_count():
        raise UserError(f"--gpuid {gpuid[0]}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if len(gpuid) > 1:
        log.warning("one device is used: cuda:%d", gpuid[0])
    return torch.device(f"cuda:{gpuid[0]}")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
