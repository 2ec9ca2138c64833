"""Imported at the start of every Python the tests start (``tests/offline`` leads their ``PYTHONPATH``): the network
is taken away, as on a machine without one. A download attempt fails at once (``urllib``), and so does any socket
connection to an internet address (local sockets still work)."""
import socket
import urllib.error
import urllib.request

REFUSAL = "network disabled in tests"


def refuse(*args, **kwargs):
    raise urllib.error.URLError(REFUSAL)


urllib.request.urlopen = refuse
_connect = socket.socket.connect


def connect_locally(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(REFUSAL)
    return _connect(self, address)


socket.socket.connect = connect_locally
