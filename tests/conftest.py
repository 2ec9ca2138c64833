"""Shared test setup and helpers: the repository root on sys.path, no network, tiny official-format datasets, a
working directory per test, the driver runner, quick flags, agent factories and the comparison of two runs' outputs
(tests import the helpers from here).
"""

import functools
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = REPO_ROOT / "tests"
for path in (str(REPO_ROOT), str(TESTS_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)

import iBatchLearn  # noqa: E402  (needs the path above)
from agents.default import NormalNN, NormalNNSettings  # noqa: E402
from agents.SVDNet import SVDNet, SVDNetSettings  # noqa: E402
from models import build_model  # noqa: E402
from synthetic_data import (write_cifar10, write_cifar100, write_miniimagenet, write_mnist_idx,  # noqa: E402
                            write_multidataset)
from utils.errors import UserError  # noqa: E402

REFERENCE = REPO_ROOT.parent / "shared" / "reference" / "CNet_CIFAR100_finalmodel_sparse_wt0.4"
"""The published CIFAR-100 checkpoint (tests that read it skip when it is absent)."""

QUICK = ["--gpuid", "-1", "--schedule", "1", "--print_freq", "1000"]
"""Driver flags of every quick run: the CPU, one epoch, no loss logging."""


def run_driver(capsys, *argv):
    """``iBatchLearn.main(argv)`` in this process: (exit status, stdout, stderr)."""
    status = iBatchLearn.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


MACHINE_KEYS = ("task_seconds", "seconds", "std_seconds", "environment")
"""Results keys that say how long a run took and where it ran, not what it computed."""


def computed(record: dict) -> dict:
    """A results record without its ``MACHINE_KEYS``: what was computed."""
    return {key: value for key, value in record.items() if key not in MACHINE_KEYS}


def outputs(workdir: Path) -> dict:
    """Every results JSON (without its ``MACHINE_KEYS``) and every saved model file under ``workdir`` (checkpoints
    aside)."""
    found = {}
    for path in sorted((workdir / "results").rglob("*.json")):
        found[str(path.relative_to(workdir))] = computed(json.loads(path.read_text()))
    for path in sorted((workdir / "saves").rglob("*.pth")):
        if "checkpoints" not in path.parts:
            found[str(path.relative_to(workdir))] = torch.load(path)
    return found


def assert_same_outputs(expected: dict, actual: dict) -> None:
    """Same files; the same text, or the same tensors bit for bit."""
    assert sorted(expected) == sorted(actual)
    for name, value in expected.items():
        if isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
            assert list(value) == list(actual[name]), name
            for key, tensor in value.items():
                assert torch.equal(tensor, actual[name][key]), f"{name}: {key}"
        else:
            assert value == actual[name], name


def batches(task, n_batches=3, batch_size=8, n_classes=2, seed=None):
    """Random (inputs, targets, task names) batches of 32×32 RGB images, the same for the same task and seed."""
    generator = torch.Generator().manual_seed(int(task) if seed is None else seed)
    return [(torch.randn(batch_size, 3, 32, 32, generator=generator),
             torch.randint(0, n_classes, (batch_size,), generator=generator), [task] * batch_size)
            for _ in range(n_batches)]


def svd_agent(tasks=("1", "2", "3"), n_classes=2, **settings) -> SVDNet:
    """CACL on ``Net_SVD`` with a head per task, built from seed 0; one epoch a task unless ``settings`` say."""
    torch.manual_seed(0)
    model = build_model("customnet_SVD", "Net_SVD")
    model.add_heads({task: n_classes for task in tasks})
    return SVDNet(model, SVDNetSettings(**{"schedule": [1], "print_freq": 1000, **settings}))


def dense_agent(tasks=("1", "2", "3"), n_classes=2, **settings) -> NormalNN:
    """Fine-tuning (``NormalNN``) of the dense ``Net``, as ``svd_agent``."""
    torch.manual_seed(0)
    model = build_model("customnet", "Net")
    model.add_heads({task: n_classes for task in tasks})
    return NormalNN(model, NormalNNSettings(**{"schedule": [1], "print_freq": 1000, **settings}))


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The test's own working directory (results/, saves/ and runs/ are written there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test runs offline: a download attempt fails at once, as on a machine without a network."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def dataroot_fixture(name: str, write, doc: str):
    """A session fixture: a dataroot that ``write(root)`` filled with tiny official-format files."""

    @pytest.fixture(scope="session")
    def root(tmp_path_factory) -> str:
        path = str(tmp_path_factory.mktemp(name))
        write(path)
        return path

    root.__doc__ = doc
    return root


cifar10_root = dataroot_fixture("cifar10", write_cifar10, "cifar-10-batches-py/ (10 train, 4 test images a class)")
cifar100_root = dataroot_fixture("cifar100", write_cifar100, "cifar-100-python/ (5 train, 2 test images a class)")
mnist_root = dataroot_fixture("mnist", write_mnist_idx, "raw IDX files in MNIST/raw/ (200 train, 50 test digits)")
miniimagenet_root = dataroot_fixture("miniimagenet", write_miniimagenet,
                                     "mini-imagenet/{train,test}.pkl (2 train, 1 test image a class, 100 classes)")
multidataset_root = dataroot_fixture("multidataset", write_multidataset,
                                     "all five members of the 5-dataset sequence, a few images a class each")


def one_line(error: pytest.ExceptionInfo) -> str:
    """The message of a raised error, which must be one line."""
    message = str(error.value)
    assert "\n" not in message
    return message


def error_after_corrupting(path: str, corrupt, read) -> str:
    """Replace the file ``path`` by ``corrupt(path)`` (its original stays beside it as ``path_copy``) and return
    the one-line ``UserError`` message of ``read()``."""
    os.rename(path, path + "_copy")
    corrupt(path)
    with pytest.raises(UserError) as error:
        read()
    return one_line(error)


@pytest.fixture
def eager_compile(monkeypatch):
    """``torch.compile`` with dynamo's tracing and guards but without code generation (seconds, not a minute)."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
