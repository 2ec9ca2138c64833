"""Checkpoints of a training run in progress, so that ``--resume`` continues it exactly where it stopped.

A checkpoint is one ``.pth`` file holding a dict: ``format``, the run's settings (``args``), its ``position`` (a
:class:`Position` as a dict: where the sweep over its experiments and ``--repeat`` stands, the accuracies so far and
every agent's training state) and the state of every random generator (``rng``). Each is written atomically into
``saves/<exp_name>/checkpoints/checkpoint-<n>.pth``; only the latest ``KEEP`` are kept.

Checkpoints at the end of a task, a repeat or an experiment are always written; one at the end of an epoch when
``--checkpoint_interval`` seconds have passed since the last (0: after every epoch). A VGG16 checkpoint is ~180 MB,
and on a GPU an epoch of a 5-class task can take less time than writing it.
"""
import fcntl
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Iterator, List, Mapping, Optional

import torch

from evaluation.results import PLACE_FLAGS
from experiment.protocols import Progress
from utils.errors import UserError
from utils.files import atomic_torch_save, write_error
from utils.flags import format_values
from utils.runtime import rng_state

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
KEEP = 3
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)\.pth")


@dataclass
class Position:
    """Where a sweep stands: the experiment of index ``experiment_index`` (into ``Config.experiments``), its repeat
    ``repeat``, and how far that repeat has come (``progress``).

    ``finished`` holds the run records of the experiments done, by name; ``runs`` those of the current experiment's
    finished repeats. ``rng``: the random generators' state to continue the current repeat with (a resumed
    checkpoint's; None: seeded afresh).
    """

    experiment_index: int = 0
    repeat: int = 0
    finished: Dict[str, List[dict]] = field(default_factory=dict)
    runs: List[dict] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    rng: Optional[dict] = None

    def finish_repeat(self, record: dict) -> None:
        """The current repeat is done, with results ``record``: on to the next."""
        self.runs.append(record)
        self.repeat += 1
        self.progress, self.rng = Progress(), None

    def finish_experiment(self, name: str) -> None:
        """Every repeat of the current experiment (``name``) is done: on to the next experiment."""
        self.finished[name] = self.runs
        self.experiment_index, self.repeat, self.runs = self.experiment_index + 1, 0, []

    def to_dict(self) -> dict:
        """As a checkpoint holds it: one flat dict (``experiment``, ``repeat``, ``finished``, ``runs`` and the
        fields of ``progress``)."""
        return {"experiment": self.experiment_index, "repeat": self.repeat, "finished": self.finished,
                "runs": self.runs, **asdict(self.progress)}

    @classmethod
    def from_dict(cls, saved: dict) -> "Position":
        """The inverse of ``to_dict``; a field of ``progress`` an older checkpoint lacks keeps its default."""
        progress = Progress(**{name: saved[name] for name in (f.name for f in fields(Progress)) if name in saved})
        return cls(saved["experiment"], saved["repeat"], saved["finished"], saved["runs"], progress)


def run_settings(flags: Mapping[str, Any]) -> dict:
    """The flags that decide what a run computes (all but ``PLACE_FLAGS``)."""
    return {name: value for name, value in sorted(flags.items()) if name not in PLACE_FLAGS}


def check_same_settings(saved: dict, flags: Mapping[str, Any], source: str) -> None:
    """A resumed run must compute what the interrupted one did: a one-line error lists the flags that differ."""
    flags = settings_differences(saved, flags)
    if flags:
        raise UserError(f"--resume: {source} was written with other settings: {flags}; resume with the same flags, "
                        f"or pass --overwrite to start over")


def settings_differences(saved: dict, flags: Mapping[str, Any]) -> str:
    """The flags of ``run_settings(flags)`` whose value differs from ``saved``'s, as ``--flag SAVED (now VALUE)``
    (empty when none differs)."""
    now = run_settings(flags)
    differ = [name for name in sorted(set(saved) | set(now)) if saved.get(name) != now.get(name)]
    return ", ".join(f"--{name} {format_values(saved.get(name))} (now {format_values(now.get(name))})"
                     for name in differ)


class RunCheckpoints:
    """The checkpoints of one ``--exp_name`` run with ``flags``: numbered files in ``directory``, the latest
    ``keep`` kept; optional ones (ends of epochs) only once ``interval`` seconds have passed since the last one."""

    def __init__(self, directory: str, flags: Mapping[str, Any], keep: int = KEEP, interval: float = 0.0):
        self.directory = directory
        self.flags = flags
        self.keep = keep
        self.interval = interval
        self.last_saved = time.monotonic()

    def numbers(self) -> List[int]:
        """Numbers of the checkpoints on disk, oldest first (half-written temporary files are not checkpoints)."""
        if not os.path.isdir(self.directory):
            return []
        matches = (CHECKPOINT_NAME.fullmatch(name) for name in os.listdir(self.directory))
        return sorted(int(match.group(1)) for match in matches if match)

    def path(self, number: int) -> str:
        return os.path.join(self.directory, f"checkpoint-{number:06d}.pth")

    def save(self, position: Position, optional: bool = False) -> None:
        if optional and time.monotonic() - self.last_saved < self.interval:
            return
        numbers = self.numbers()
        number = numbers[-1] + 1 if numbers else 1
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "args": run_settings(self.flags), "position": position.to_dict(),
                           "rng": rng_state()}, self.path(number))
        for old in (numbers + [number])[:-self.keep]:
            os.remove(self.path(old))
        self.last_saved = time.monotonic()

    def latest(self) -> Optional[dict]:
        """The newest readable checkpoint (an unreadable one is reported and the one before it tried), or None."""
        numbers = self.numbers()
        for number in reversed(numbers):
            path = self.path(number)
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # torch raises several types for unreadable files
                log.warning("skipping unreadable checkpoint %s: %s", path, str(error).splitlines()[0])
                continue
            if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
                raise UserError(f"{path} is not a checkpoint this version can resume (format "
                                f"{checkpoint.get('format') if isinstance(checkpoint, dict) else 'unknown'})")
            checkpoint["path"] = path
            checkpoint["position"] = Position.from_dict(checkpoint["position"])
            return checkpoint
        if numbers:
            raise UserError(f"no checkpoint in {self.directory} can be read: pass --overwrite to start over")
        return None

    def resumed(self) -> Optional[Position]:
        """The position of the latest checkpoint, with the random generators' state there, checked to be of these
        flags; None without a checkpoint."""
        checkpoint = self.latest()
        if checkpoint is None:
            return None
        check_same_settings(checkpoint["args"], self.flags, checkpoint["path"])
        position = checkpoint["position"]
        position.rng = checkpoint["rng"]
        log.info("resuming from %s: experiment %d, repeat %d, %d task(s) done", checkpoint["path"],
                 position.experiment_index + 1, position.repeat, position.progress.tasks_done)
        return position

    def clear(self) -> None:
        """Remove every checkpoint and the directory."""
        if os.path.isdir(self.directory):
            shutil.rmtree(self.directory)


@contextmanager
def exclusive_run(directory: str, exp_name: str) -> Iterator[None]:
    """Hold ``directory/run.lock`` (an advisory lock the system releases when the process dies, even by SIGKILL), so
    that a second process training the same ``--exp_name`` stops with a message instead of mixing checkpoints."""
    path = os.path.join(directory, "run.lock")
    try:
        os.makedirs(directory, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")
    except OSError as error:
        raise write_error(path, error) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise UserError(f"another process ({handle.read().strip() or 'pid unknown'}) is training --exp_name "
                            f"{exp_name} in this directory: wait for it, or choose another --exp_name") from None
        try:
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"pid {os.getpid()}")
                handle.flush()
            except OSError as error:
                raise write_error(path, error) from None
            yield
        finally:
            os.remove(path)
            if not os.listdir(directory):
                os.rmdir(directory)
