"""Writing outputs so that a crash never leaves a half-written file: temporary file, fsync, rename."""
import json
import os
import tempfile

import torch


def _atomic_write(path: str, write) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def atomic_torch_save(obj, path: str) -> None:
    _atomic_write(path, lambda stream: torch.save(obj, stream))


def atomic_write_bytes(data: bytes, path: str) -> None:
    _atomic_write(path, lambda stream: stream.write(data))


def atomic_json_dump(obj, path: str) -> None:
    _atomic_write(path, lambda stream: stream.write(json.dumps(obj, indent=2).encode()))
