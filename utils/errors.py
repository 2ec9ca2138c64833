"""The one exception type for mistakes a user can fix (bad flags, missing data, bad checkpoints), and the command
lines' parser that raises it."""
import argparse


class UserError(Exception):
    """A one-line message telling the user what is wrong and what to do.

    The driver prints it as ``error: <message>`` and exits with status 2, without a traceback.
    """


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes (an unknown flag, a missing or malformed value) are one-line ``UserError``s."""

    def error(self, message: str):
        raise UserError(f"{message} (--help lists the flags)")
