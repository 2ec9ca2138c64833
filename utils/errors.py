"""The one exception type for mistakes a user can fix (bad flags, missing data, bad checkpoints)."""


class UserError(Exception):
    """A one-line message telling the user what is wrong and what to do.

    The driver prints it as ``error: <message>`` and exits with status 2, without a traceback.
    """
