"""Writing outputs so that a crash never leaves a half-written file: temporary file, fsync, rename."""
import json
import os
import tempfile
from typing import Optional

import torch

from utils.errors import UserError


def _atomic_write(path: str, write) -> None:
    """``write(stream)`` into a temporary file beside ``path``, synced, then renamed over ``path``. A write the
    system refuses (no space, read-only, quota, permissions) is a one-line ``UserError`` naming ``path`` and what to
    do; no partial file is left."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    except OSError as error:
        raise write_error(path, error) from None
    try:
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp's file is private; an output is not
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        os.unlink(temporary)
        cause = system_error(error)
        if cause is None:
            raise
        raise write_error(path, cause) from None


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def system_error(error: BaseException) -> Optional[OSError]:
    """The ``OSError`` behind ``error``: itself, or one it was raised from or while handling (torch's writer wraps
    the system's error in a ``RuntimeError``); None if there is none."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


def write_error(path: str, error: OSError) -> UserError:
    return UserError(f"cannot write {path}: {error.strerror or error}; free space (or make it writable), then run "
                     f"the same command again (a training run: with --resume, from its last checkpoint)")


def atomic_torch_save(obj, path: str) -> None:
    _atomic_write(path, lambda stream: torch.save(obj, stream))


def atomic_write_bytes(data: bytes, path: str) -> None:
    _atomic_write(path, lambda stream: stream.write(data))


def atomic_json_dump(obj, path: str) -> None:
    _atomic_write(path, lambda stream: stream.write(json.dumps(obj, indent=2).encode()))


def read_state(path) -> object:
    """``torch.load`` of a file we did not write ourselves: a one-line error when it is missing or unreadable."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unreadable files
        raise UserError(f"cannot read {path}: {str(error).splitlines()[0]}") from None
