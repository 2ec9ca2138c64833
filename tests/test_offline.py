"""The tests run offline, in this process and in every process they start (``tests/offline/sitecustomize.py``)."""
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

TRY_THE_NETWORK = """
import socket, urllib.request
for attempt in (lambda: urllib.request.urlopen("http://127.0.0.1:9/"),
                lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("127.0.0.1", 9))):
    try:
        attempt()
    except OSError as error:
        print(error)
"""


def test_this_process_has_no_network():
    with pytest.raises(urllib.error.URLError, match="network disabled in tests"):
        urllib.request.urlopen("http://127.0.0.1:9/")


def test_a_process_the_tests_start_has_no_network():
    result = subprocess.run([sys.executable, "-c", TRY_THE_NETWORK], capture_output=True, text=True, timeout=60)
    assert result.stdout.count("network disabled in tests") == 2, result.stdout + result.stderr
