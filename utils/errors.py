"""The one exception type for mistakes a user can fix (bad flags, missing data, bad checkpoints), the command
lines' parser that raises it, and the frame of every command line's ``main``."""
import argparse
import signal
import sys
import threading
from typing import Callable, Optional

from utils.logs import configure_logging


class UserError(Exception):
    """A one-line message telling the user what is wrong and what to do.

    The driver prints it as ``error: <message>`` and exits with status 2, without a traceback.
    """


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes (an unknown flag, a missing or malformed value) are one-line ``UserError``s."""

    def error(self, message: str):
        raise UserError(f"{message} (--help lists the flags)")


def run_command(work: Callable[[], None], stopped: Optional[str] = None) -> int:
    """A command line's ``main``: logging configured, ``work()`` run; exit status 0, or 2 after a ``UserError``
    printed as one line ``error: <message>``. With ``stopped`` (what the user reads then), Ctrl-C and SIGTERM (a
    scheduler's pre-emption, ``kill``) stop ``work`` cleanly with status 130; the previous SIGTERM handler is back
    afterwards."""
    configure_logging()
    previous = None
    if stopped is not None and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        work()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if stopped is None:
            raise
        print(f"stopped: {stopped}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
