"""Fixtures of every test: no network (in this process and in every process a test starts), a working directory
per test, tiny official-format datasets, and a quick ``torch.compile``. Helpers the tests import are in
``helpers.py``."""
import functools
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

import models.vgg_16_bn
from dataloaders.synthetic import (write_cifar10, write_cifar100, write_miniimagenet, write_mnist_idx,
                                   write_multidataset)
from helpers import REPO_ROOT

OFFLINE = REPO_ROOT / "tests" / "offline"
"""Holds the ``sitecustomize`` that takes the network away from every Python started with it on its path."""


@pytest.fixture(scope="session", autouse=True)
def offline_subprocesses():
    """Every process a test starts runs offline: ``tests/offline`` leads its ``PYTHONPATH``."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(OFFLINE), str(REPO_ROOT), previous)))
    yield
    if previous is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = previous


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


@pytest.fixture
def eager_compile(monkeypatch):
    """``torch.compile`` with dynamo's tracing and guards but without code generation (seconds, not a minute)."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))


@pytest.fixture
def recorded_graphs(monkeypatch):
    """``torch.compile`` without code generation, as ``eager_compile``, from an empty dynamo cache; the list it returns
    receives every graph dynamo compiles (its ``torch.fx.GraphModule``)."""
    graphs = []

    def recording(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=recording))
    return graphs


@pytest.fixture
def narrow_vgg(monkeypatch):
    """VGG16-BN with 8 channels a layer: its BatchNorms, quickly."""
    monkeypatch.setattr(models.vgg_16_bn, "VGG16_CFG", [8 if item != "M" else item for item in
                                                        models.vgg_16_bn.VGG16_CFG])
