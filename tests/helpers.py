"""Helpers the tests share (fixtures are in ``conftest.py``): the published checkpoint's place, the driver run in
this process, quick flags, the comparison of two runs' outputs, tiny batches, agent factories and one-line error
checks."""
import copy
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import iBatchLearn
from agents.default import NormalNN, NormalNNSettings
from agents.SVDNet import SVDNet, SVDNetSettings
from models import build_model
from utils.errors import UserError
from utils.runtime import restore_rng, rng_state

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = REPO_ROOT.parent / "shared" / "reference" / "CNet_CIFAR100_finalmodel_sparse_wt0.4"
"""The published CIFAR-100 checkpoint (tests that read it skip when it is absent)."""

QUICK = ["--gpuid", "-1", "--schedule", "1", "--print_freq", "1000"]
"""Driver flags of every quick run: the CPU, one epoch, no loss logging."""


def run_driver(capsys, *argv):
    """``iBatchLearn.main(argv)`` in this process: (exit status, stdout, stderr)."""
    status = iBatchLearn.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


MACHINE_KEYS = ("task_seconds", "seconds", "std_seconds", "images_per_s", "environment")
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
    """Same files; the same text, or the same tensors bit for bit (at any depth of a saved file)."""
    assert sorted(expected) == sorted(actual)
    for name, value in expected.items():
        assert_same_content(value, actual[name], name)


def assert_same_content(expected, actual, where: str) -> None:
    """Equal values, tensors bit for bit; a dict of tensors (a state dict) in the same order too."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and torch.equal(expected, actual), where
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), where
        if all(isinstance(value, torch.Tensor) for value in expected.values()):
            assert list(expected) == list(actual), where
        assert sorted(map(str, expected)) == sorted(map(str, actual)), where
        for key, value in expected.items():
            assert_same_content(value, actual[key], f"{where}: {key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(expected) == len(actual), where
        for index, (value, other) in enumerate(zip(expected, actual)):
            assert_same_content(value, other, f"{where}[{index}]")
    else:
        assert expected == actual, where


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


def operations(graphs) -> set:
    """The names of the functions and methods the graphs (``recorded_graphs``) call: ``conv2d``, ``addcdiv_``, ..."""
    return {getattr(node.target, "__name__", str(node.target)) for graph in graphs for node in graph.graph.nodes
            if node.op in ("call_function", "call_method")}


def evaluated_logits(agent, task, inputs) -> torch.Tensor:
    """``task``'s logits on ``inputs`` through the agent's evaluation path (its ``task_network``)."""
    with torch.no_grad():
        return agent.network_logits(agent.task_network(task), task, inputs)


DENSE_CHOICES = "--model_type customnet --model_name Net or --model_type vgg_16_bn --model_name vgg16_bn_cifar100"
"""The dense networks, as the error of a method that runs on them only lists them."""


def driver_error(capsys, *argv) -> str:
    """The one-line message (``error: `` stripped) of a driver run that must stop with exit status 2."""
    status, _, err = run_driver(capsys, *argv)
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err[len("error: "):-1]


def assert_saved_model_evaluates_as_trained(capsys, monkeypatch, workdir: Path, flags, exp_name: str) -> dict:
    """``--loadmodel`` of ``saves/<exp_name>`` in ``workdir``, trained with ``flags``, gives the accuracies and the
    size of the run that saved it (repeat 0's record, returned)."""
    record = json.loads((workdir / "results" / exp_name / "output_run0.json").read_text())
    monkeypatch.chdir(workdir)
    status, table, _ = run_driver(capsys, *flags, "--loadmodel", exp_name)
    assert status == 0, table
    evaluated = json.loads((workdir / "results" / exp_name / "output_eval.json").read_text())
    assert evaluated["acc"] == record["acc"] and evaluated["model_size"] == record["model_size"]
    return record


def first_step_of_task_2(agent, forward):
    """Task "1" learnt and dropout off, task 2 begun with its head: a copy of the model (training mode) with the
    gradients of the loss ``forward(copy, inputs)`` gives on task 2's first batch, and its parameters before the step
    (by name); then the agent's own step on that batch."""
    agent.learn_task("1", batches("1"))
    for dropout in (m for m in agent.model.modules() if isinstance(m, torch.nn.Dropout)):
        dropout.p = 0.0
    inputs, targets, tasks = batches("2")[0]
    agent.training_heads = ["2"]
    agent.begin_task("2")
    reference = copy.deepcopy(agent.model).train()
    before = {name: p.detach().clone() for name, p in reference.named_parameters()}
    (F.cross_entropy(forward(reference, inputs), targets, reduction="sum") / len(targets)).backward()
    agent.model.train()
    agent.observe(inputs, targets, tasks)
    return reference, before


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


def fashion_mnist_installed() -> bool:
    """Whether real Fashion-MNIST is where the loader finds it without a download (Debian's ``dataset-fashion-mnist``
    package, or ``data/FashionMNIST/raw`` of the repository)."""
    from dataloaders import local_idx_folder
    return local_idx_folder("FashionMNIST", str(REPO_ROOT / "data")) is not None


needs_fashion_mnist = pytest.mark.skipif(not fashion_mnist_installed(),
                                         reason="real Fashion-MNIST is not installed (apt-get install "
                                                "dataset-fashion-mnist)")


def start(workdir: Path, flags, *extra) -> subprocess.Popen:
    """``python iBatchLearn.py flags extra`` in ``workdir``, in the background."""
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "iBatchLearn.py"), *flags, *extra], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_after(workdir: Path, checkpoints: Path, flags, number: int, *extra) -> None:
    """Run the driver until checkpoint ``number`` exists in ``workdir/checkpoints``, then SIGKILL it (it is already
    past it)."""
    process = start(workdir, flags, *extra)
    path = workdir / checkpoints / f"checkpoint-{number:06d}.pth"
    deadline = time.monotonic() + 300
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def assert_killed_run_resumes_exactly(tmp_path: Path, flags, exp_name: str, kills) -> Path:
    """The driver with ``flags`` run to the end in ``tmp_path/reference``; in ``tmp_path/interrupted``, SIGKILLed
    after each checkpoint number of ``kills`` in turn (every run after the first with ``--resume``), then finished
    with ``--resume``: the same outputs and printed table. Returns the interrupted run's folder."""
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    reference.mkdir(), interrupted.mkdir()
    uninterrupted = start(reference, flags)
    table, err = uninterrupted.communicate()
    assert uninterrupted.returncode == 0, err
    checkpoints = Path("saves") / exp_name / "checkpoints"
    for number, kill in enumerate(kills):
        kill_after(interrupted, checkpoints, flags, kill, *(["--resume"] if number else []))
    resumed = start(interrupted, flags, "--resume")
    resumed_table, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert_same_outputs(outputs(reference), outputs(interrupted))
    assert resumed_table == table and f"{exp_name} (1 run)" in table
    return interrupted


class Interrupt(Exception):
    """Stops a task where a test saved the agent's state."""


def assert_state_saved_mid_task_continues_exactly(make_agent, stop_after: int = 1, loader=batches) -> None:
    """Tasks "1" and "2" (``loader(task)``): the agent's training state and random generators saved after epoch
    ``stop_after`` of task 2 (as a checkpoint is: weights only) and continued by a fresh ``make_agent()`` end in the
    state of an uninterrupted run (but for the seconds the tasks took)."""
    reference = make_agent()
    for task in ("1", "2"):
        reference.learn_task(task, loader(task))
    agent = make_agent()
    agent.learn_task("1", loader("1"))
    saved = io.BytesIO()

    def interrupt(report):
        if report.epoch == stop_after:
            torch.save({"agent": agent.training_state(), "rng": rng_state()}, saved)
            raise Interrupt

    with pytest.raises(Interrupt):
        agent.learn_task("2", loader("2"), on_epoch=interrupt)
    saved.seek(0)
    checkpoint = torch.load(saved, weights_only=True)
    resumed = make_agent()
    resumed.load_training_state(checkpoint["agent"])
    restore_rng(checkpoint["rng"])
    resumed.learn_task("2", loader("2"))
    state, expected = resumed.training_state(), reference.training_state()
    del state["task_seconds"], expected["task_seconds"]
    assert_same_content(expected, state, "state")
