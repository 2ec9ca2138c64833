"""Shared test setup: the repository root on sys.path, no network, tiny official-format datasets."""

import functools
import os
import sys
import urllib.error
import urllib.request

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.join(REPO_ROOT, "tests")
for path in (REPO_ROOT, TESTS_DIR):
    if path not in sys.path:
        sys.path.insert(0, path)

from synthetic_data import write_cifar10, write_cifar100, write_mnist_idx  # noqa: E402  (needs the path above)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test runs offline: a download attempt fails at once, as on a machine without a network."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory) -> str:
    """A dataroot holding a tiny official-format cifar-10-batches-py/ (10 train, 4 test images per class)."""
    root = str(tmp_path_factory.mktemp("cifar10"))
    write_cifar10(root)
    return root


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory) -> str:
    """A dataroot holding a tiny official-format cifar-100-python/ (5 train, 2 test images per class)."""
    root = str(tmp_path_factory.mktemp("cifar100"))
    write_cifar100(root)
    return root


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> str:
    """A dataroot holding tiny raw IDX files in MNIST/raw/ (200 train, 50 test digits)."""
    root = str(tmp_path_factory.mktemp("mnist"))
    write_mnist_idx(root)
    return root


@pytest.fixture
def eager_compile(monkeypatch):
    """``torch.compile`` with dynamo's tracing and guards but without code generation (seconds, not a minute)."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
