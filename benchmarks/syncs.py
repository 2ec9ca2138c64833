"""Host-device syncs, the points where the CPU waits for the GPU, each with the place in the project that made it.

On a GPU, :class:`CudaSyncs` records them through ``torch.cuda.set_sync_debug_mode("warn")``, which warns at every
synchronising call PyTorch makes (a read of a device value, a copy to the host, a blocking copy to the device, an
explicit synchronisation). ``tests/simulated_cuda.py`` records the same kinds without a GPU.
"""
import os
import sys
import warnings
from types import FrameType
from typing import List, NamedTuple, Optional

import torch

SYNC_WARNING = "called a synchronizing CUDA operation"
"""The start of the warning of ``torch.cuda.set_sync_debug_mode("warn")``."""


class Sync(NamedTuple):
    """One point where the CPU waits (or, simulated, would wait) for the GPU."""

    kind: str
    """``read`` (a device value to Python, or an output whose size depends on values), ``to host``, ``to device``
    (a blocking copy); ``sync`` when PyTorch reported it on a GPU."""
    what: str
    """The torch function, or PyTorch's message."""
    where: str
    """``path:line (function)`` of the innermost frame of the project's own code (its tests aside) that led to it."""

    @property
    def site(self) -> str:
        """``where`` without the line number: ``path (function)``."""
        path, _, function = self.where.partition(" ")
        return f"{path.rsplit(':', 1)[0]} {function}".strip()


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
OUTSIDE = (os.path.join(ROOT, "tests") + os.sep, os.path.abspath(__file__))
"""Files of the repository that are not the project's own code: its tests, and this module."""


def project_frame(frame: Optional[FrameType]) -> str:
    """``path:line (function)`` of the innermost frame, from ``frame`` outwards, in the project's code outside
    ``tests/`` and this module."""
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(ROOT) and not path.startswith(OUTSIDE):
            return f"{path[len(ROOT):]}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return "outside the project"


class CudaSyncs:
    """``with CudaSyncs() as recorder:`` records in ``recorder.syncs`` every sync PyTorch makes on CUDA inside the
    block (``torch.cuda.set_sync_debug_mode("warn")``; other warnings pass through)."""

    def __init__(self):
        self.syncs: List[Sync] = []
        self.caught = warnings.catch_warnings()

    def __enter__(self) -> "CudaSyncs":
        self.caught.__enter__()
        warnings.simplefilter("always")
        show = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):
            if str(message).startswith(SYNC_WARNING):
                self.syncs.append(Sync("sync", SYNC_WARNING, project_frame(sys._getframe(1))))
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc) -> None:
        torch.cuda.set_sync_debug_mode("default")
        self.caught.__exit__(*exc)
