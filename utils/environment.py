"""What a result was computed with: library versions, the device, the threads, the code's commit and the flags."""
import os
import platform
import subprocess
from typing import Mapping, Optional, Sequence

import torch

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit(directory: str = REPOSITORY) -> Optional[str]:
    """The commit checked out in ``directory``, with ``+changes`` when files differ from it; None outside git."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=directory, capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if changed else "")


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's (the processor, or the machine type where the system does not say)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def environment_record(device: torch.device, flags: Mapping, method_flags: Sequence[str], method: str) -> dict:
    """``{"torch", "cuda", "python", "device", "device_name", "threads", "git_commit", "flags", "method_flags",
    "method"}``; ``cuda`` is the CUDA version torch was built with (None for a CPU build); ``method_flags`` the flags
    of ``flags`` that only some methods read and this run's does; ``method`` the method's name in the papers
    (``CACL``, ``fine-tuning``, ``EWC``...)."""
    return {
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "flags": dict(flags),
        "method_flags": list(method_flags),
        "method": method,
    }
