"""Bad input stops with one line ``error: ...`` and exit status 2, never a traceback, and damages nothing.

Every case of :data:`CASES` runs through ``iBatchLearn.main`` in a working directory that already holds a finished
experiment (``results/done_sparse_wt0.01/`` and ``saves/done_sparse_wt0.01/`` of a tiny real run), under the same
``--exp_name`` and with ``--overwrite``: even allowed to replace that experiment, a bad input must leave every file
under ``results/`` and ``saves/`` byte-identical and add none. A damaged dataset or checkpoint is a per-test copy of
the good one with one file cut in half or removed; its message must name that file where it should be.
"""
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Tuple

import pytest
import torch

import dataloaders.datasets
import cluster.sweep
import iBatchLearn
from helpers import QUICK as ONE_EPOCH
from helpers import REPO_ROOT
from cluster.jobs import Sweep
from experiment.config import read_config
from dataloaders.synthetic import (write_cifar10, write_cifar100, write_miniimagenet, write_mnist_idx,
                            write_multidataset)
from utils.runtime import pick_device

QUICK = [*ONE_EPOCH, "--repeat", "1", "--batch_size", "16"]
EXPERIMENT = "done_sparse_wt0.01"
"""The finished experiment every case runs beside (``--exp_name done``, the default ``--sparse_wt``)."""

WRITERS = {
    "CIFAR10": write_cifar10,
    "CIFAR100": write_cifar100,
    "MNIST": write_mnist_idx,
    "MNIST.gz": partial(write_mnist_idx, gz=True),
    "FashionMNIST.gz": partial(write_mnist_idx, folder_name="FashionMNIST", gz=True),
    "miniImageNet": partial(write_miniimagenet, n_per_class_train=1, n_per_class_test=1),
    "multidataset": write_multidataset,
}
"""Tiny official-format files of each dataset the driver reads (``.gz``: the gzipped IDX variant)."""

DATASET_FLAGS = {
    "CIFAR10": ["--dataset", "CIFAR10", "--first_split_size", "5", "--other_split_size", "5"],
    "CIFAR100": ["--dataset", "CIFAR100", "--first_split_size", "50", "--other_split_size", "50"],
    "MNIST": ["--dataset", "MNIST", "--first_split_size", "5", "--other_split_size", "5"],
    "MNIST.gz": ["--dataset", "MNIST", "--first_split_size", "5", "--other_split_size", "5"],
    "FashionMNIST.gz": ["--dataset", "FashionMNIST", "--first_split_size", "5", "--other_split_size", "5"],
    "miniImageNet": ["--dataset", "miniImageNet", "--first_split_size", "50", "--other_split_size", "50"],
    "multidataset": ["--dataset", "multidataset"],
}


def truncate(path: Path) -> None:
    """Keep the first half of the file, as an interrupted download or copy leaves it."""
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def rank_of_another_model(path: Path) -> None:
    torch.save([3, 3, 3, 3, 3], path)


Damage = Tuple[Callable[[Path], None], str]


@dataclass(frozen=True)
class Case:
    """One bad input: extra flags, the fragments its message must contain, and what to damage first.

    ``argv`` and ``expect`` may name ``{data}`` (the dataroot), ``{file}`` (the damaged file) and ``{ckpt}`` (a
    copy of the finished experiment's checkpoint directory, damaged by ``checkpoint``).
    """

    argv: Tuple[str, ...] = ()
    expect: Tuple[str, ...] = ()
    dataset: str = "CIFAR10"
    data: Optional[Damage] = None
    checkpoint: Optional[Damage] = None
    cuda_devices: int = 0


def case(id, *argv, expect, **fields):
    return pytest.param(Case(tuple(argv), tuple(expect), **fields), id=id)


def missing(dataset, relative, *expect):
    return case(f"missing-{dataset}-{os.path.basename(relative)}", dataset=dataset, data=(remove, relative),
                expect=expect or ("{file}",))


def truncated(dataset, relative, *expect):
    return case(f"truncated-{dataset}-{os.path.basename(relative)}", dataset=dataset, data=(truncate, relative),
                expect=expect or ("{file}",))



CASES = [
    # dataset files missing: which file, and where it should be
    missing("CIFAR10", "cifar-10-batches-py", "cifar-10-batches-py/", "under {data}/"),
    missing("CIFAR10", "cifar-10-batches-py/data_batch_2"),
    missing("CIFAR100", "cifar-100-python/meta"),
    missing("MNIST", "MNIST/raw/train-labels-idx1-ubyte"),
    missing("FashionMNIST.gz", "FashionMNIST/raw/t10k-images-idx3-ubyte.gz",
            "{data}/FashionMNIST/raw/t10k-images-idx3-ubyte[.gz] is missing"),
    missing("miniImageNet", "mini-imagenet/test.pkl"),
    missing("multidataset", "SVHN/train_32x32.mat"),
    missing("multidataset", "notMNIST.zip"),
    # dataset files cut in half, in every format read
    truncated("CIFAR10", "cifar-10-batches-py/data_batch_3"),
    truncated("CIFAR10", "cifar-10-batches-py/test_batch"),
    truncated("CIFAR10", "cifar-10-batches-py/batches.meta"),
    truncated("CIFAR100", "cifar-100-python/train"),
    truncated("CIFAR100", "cifar-100-python/meta"),
    truncated("MNIST", "MNIST/raw/train-images-idx3-ubyte"),
    truncated("MNIST", "MNIST/raw/t10k-labels-idx1-ubyte"),
    truncated("MNIST.gz", "MNIST/raw/train-images-idx3-ubyte.gz"),
    truncated("FashionMNIST.gz", "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz"),
    truncated("miniImageNet", "mini-imagenet/train.pkl"),
    truncated("multidataset", "SVHN/test_32x32.mat"),
    truncated("multidataset", "notMNIST.zip"),
    truncated("multidataset", "cifar-10-batches-py/data_batch_1"),
    truncated("multidataset", "MNIST/raw/train-images-idx3-ubyte"),
    # split sizes that do not divide the classes
    case("split-3-3", "--first_split_size", "3", "--other_split_size", "3", expect=["do not divide the 10 classes"]),
    case("split-larger-than-classes", "--first_split_size", "20", expect=["do not divide the 10 classes"]),
    case("split-zero", "--first_split_size", "0", expect=["--first_split_size 0", "must be positive"]),
    case("split-30-30-cifar100", "--first_split_size", "30", "--other_split_size", "30", dataset="CIFAR100",
         expect=["do not divide the 100 classes"]),
    # unknown names: the valid ones are listed
    case("unknown-dataset", "--dataset", "CIFAR1000",
         expect=["'CIFAR1000'", "CIFAR10, CIFAR100, MNIST, FashionMNIST, miniImageNet, multidataset"]),
    case("unknown-model_type", "--model_type", "resnet",
         expect=["unknown --model_type 'resnet'", "valid: customnet, customnet_SVD, vgg_16_bn"]),
    case("unknown-model_name", "--model_name", "Net_SVDX",
         expect=["unknown --model_name 'Net_SVDX'", "valid: Net_SVD"]),
    case("model_name-of-another-type", "--model_type", "vgg_16_bn", "--model_name", "Net_SVD",
         expect=["unknown --model_name 'Net_SVD'", "valid: vgg16_bn_cifar100, vgg16_bn_cifar100_SVD"]),
    case("unknown-agent_type", "--agent_type", "EWC",
         expect=["unknown --agent_type", "EWC", "valid: ", "default", "SVDNet"]),
    case("unknown-agent_name", "--agent_name", "NormalNN", expect=["--agent_name", "NormalNN", "valid: ", "SVDNet"]),
    case("unknown-agent_name-of-regularization", "--agent_type", "regularization", "--agent_name", "EWCX",
         expect=["unknown --agent_name 'EWCX' for --agent_type regularization", "valid: L2, EWC, EWC_online, MAS, SI"]),
    case("SVDNet-on-a-dense-model", "--model_type", "customnet", "--model_name", "Net",
         expect=["the SVDNet agent needs a model with SVD layers"]),
    # the baselines' own flags
    case("reg_coef-negative", "--reg_coef", "1", "-0.5", expect=["--reg_coef must be 0 or more", "got 1.0 -0.5"]),
    case("memory_size-zero", "--memory_size", "0", expect=["--memory_size must be positive, got 0"]),
    case("max_train_samples-negative", "--max_train_samples", "-5", expect=["--max_train_samples must be 0", "-5"]),
    case("unknown-optimizer", "--optimizer", "Adamm",
         expect=["unknown --optimizer 'Adamm'", "valid: ", "SGD", "amsgrad"]),
    # --schedule
    case("schedule-empty", "--schedule", expect=["--schedule", "expected at least one argument"]),
    case("schedule-decreasing", "--schedule", "3", "2", expect=["--schedule must be increasing", "3 2"]),
    case("schedule-repeated", "--schedule", "2", "2", expect=["--schedule must be increasing", "2 2"]),
    case("schedule-zero", "--schedule", "0", expect=["--schedule must be increasing positive"]),
    # --energy_sv outside (0, 1)
    case("energy_sv-zero", "-e", "0", expect=["--energy_sv must lie in (0, 1), got 0.0"]),
    case("energy_sv-one", "--energy_sv", "1", expect=["--energy_sv must lie in (0, 1), got 1.0"]),
    case("energy_sv-above-one", "--energy_sv", "1.5", expect=["--energy_sv must lie in (0, 1), got 1.5"]),
    case("energy_sv-negative", "-e", "-0.1", expect=["--energy_sv must lie in (0, 1), got -0.1"]),
    case("energy_sv-nan", "-e", "nan", expect=["--energy_sv must lie in (0, 1), got nan"]),
    # non-positive --batch_size and --repeat
    case("batch_size-zero", "--batch_size", "0", expect=["--batch_size must be positive, got 0"]),
    case("batch_size-negative", "--batch_size", "-16", expect=["--batch_size must be positive, got -16"]),
    case("repeat-zero", "--repeat", "0", expect=["--repeat must be positive, got 0"]),
    case("repeat-negative", "--repeat", "-1", expect=["--repeat must be positive, got -1"]),
    # weights, sizes and counts out of their ranges
    case("sparse_wt-negative", "--sparse_wt", "0.1", "-0.5", expect=["--sparse_wt must be 0 or more", "0.1 -0.5"]),
    case("perp_wt-negative", "--perp_wt", "-1", expect=["--perp_wt must be 0 or more", "-1.0"]),
    case("force_out_dim-negative", "--force_out_dim", "-3", expect=["--force_out_dim must be 0 (off) or positive"]),
    case("n_permutation-negative", "--n_permutation", "-1", expect=["--n_permutation must be 0 (off) or positive"]),
    case("momentum-2-with-SGD", "--optimizer", "SGD", "--momentum", "2",
         expect=["--momentum must lie in [0, 1) for --optimizer SGD, got 2.0"]),
    case("weight_decay-negative", "--weight_decay", "-0.1", expect=["--weight_decay must be 0 or more, got -0.1"]),
    case("e_search-above-one", "--debug", "-e_search", "0.1", "1.5", expect=["--e_search", "0 <= LOW < HIGH < 1"]),
    # an experiment name is one folder name
    case("exp_name-escapes", "--exp_name", "../../escape", expect=["--exp_name must be one folder name",
                                                                    "'../../escape'"]),
    case("exp_name-dot-dot", "--exp_name", "..", expect=["--exp_name must be one folder name"]),
    # --incremental_class with the dataset's labels and the tasks shuffled: the counted outputs are not the classes
    case("incremental_class-shuffled", "--incremental_class", "--force_out_dim", "10", "--no_class_remap",
         expect=["--incremental_class counts the first outputs", "--no_rand_split_order"]),
    # --task_agnostic where one head already takes no task label, or where a task is evaluated only right after it
    case("task_agnostic-incremental_class", "--task_agnostic", "--incremental_class", "--force_out_dim", "10",
         expect=["--task_agnostic", "--incremental_class one shared head already spans every class"]),
    case("task_agnostic-force_out_dim", "--task_agnostic", "--force_out_dim", "10",
         expect=["--task_agnostic", "--force_out_dim every task shares the head All"]),
    case("task_agnostic-single_tasks", "--task_agnostic", "--single_tasks",
         expect=["--task_agnostic", "--single_tasks evaluates a task only before the later ones are learnt"]),
    case("task_agnostic-debug", "--task_agnostic", "--debug", expect=["--task_agnostic measures whole runs"]),
    # one device
    case("gpuid-several", "--gpuid", "0", "1", expect=["--gpuid takes one device id", "0 1"]),
    # a CUDA device that does not exist
    case("gpuid-without-cuda", "--gpuid", "3", expect=["--gpuid 3: this machine has no CUDA device", "--gpuid -1"]),
    case("gpuid-1-without-cuda", "--gpuid", "1", expect=["--gpuid 1: this machine has no CUDA device"]),
    case("gpuid-beyond-device_count", "--gpuid", "1", cuda_devices=1,
         expect=["--gpuid 1: this machine has 1 CUDA device(s)", "--gpuid -1"]),
    # --loadmodel: missing directory or file, unreadable file, another architecture
    case("loadmodel-no-such-directory", "--loadmodel", "no_such_model",
         expect=["--loadmodel no_such_model: no such checkpoint directory", "saves/no_such_model"]),
    case("loadmodel-missing-task_identifiers", "--loadmodel", "{ckpt}", checkpoint=(remove, "task_identifiers.pth"),
         expect=["{ckpt} lacks task_identifiers.pth"]),
    case("loadmodel-missing-final_model", "--loadmodel", "{ckpt}", checkpoint=(remove, "final_model.pth"),
         expect=["{ckpt} lacks final_model.pth"]),
    case("loadmodel-truncated-final_model", "--loadmodel", "{ckpt}", checkpoint=(truncate, "final_model.pth"),
         expect=["cannot read {ckpt}/final_model.pth"]),
    case("loadmodel-truncated-chann_used", "--loadmodel", "{ckpt}", checkpoint=(truncate, "chann_used.pth"),
         expect=["cannot read {ckpt}/chann_used.pth"]),
    case("loadmodel-rank-of-another-model", "--loadmodel", "{ckpt}", checkpoint=(rank_of_another_model, "rank.pth"),
         expect=["{ckpt}/rank.pth [3, 3, 3, 3, 3] disagrees with the ranks of final_model.pth"]),
    case("loadmodel-heads-of-another-split", "--loadmodel", EXPERIMENT, "--first_split_size", "2",
         "--other_split_size", "2",
         expect=[f"saves/{EXPERIMENT}/final_model.pth", "tensor last.1.0.weight has shape (5, 1024)", "(2, 1024)"]),
    case("loadmodel-heads-of-another-dataset", "--loadmodel", EXPERIMENT, dataset="CIFAR100",
         expect=[f"saves/{EXPERIMENT}/final_model.pth", "tensor last.1.0.weight has shape (5, 1024)", "(50, 1024)"]),
    case("loadmodel-into-vgg16_bn_SVD", "--loadmodel", EXPERIMENT, "--model_type", "vgg_16_bn", "--model_name",
         "vgg16_bn_cifar100_SVD", expect=[f"saves/{EXPERIMENT}/final_model.pth"]),
    case("loadmodel-into-dense-Net", "--loadmodel", EXPERIMENT, "--model_type", "customnet", "--model_name", "Net",
         expect=["the SVDNet agent needs a model with SVD layers"]),
]

SUBPROCESS_CASES = ("truncated-CIFAR10-data_batch_3", "gpuid-without-cuda", "loadmodel-truncated-final_model")
"""Run as ``python iBatchLearn.py``, to show that no traceback reaches a user's terminal (torch import: ~3 s each)."""


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dataroots(tmp_path_factory):
    """``dataroots(name)``: a folder holding the tiny official-format files of :data:`WRITERS` ``[name]`` (shared:
    read it, damage only a copy)."""
    written = {}

    def dataroot(name: str) -> Path:
        if name not in written:
            written[name] = tmp_path_factory.mktemp(name.replace(".", "_"))
            WRITERS[name](str(written[name]))
        return written[name]

    return dataroot


@pytest.fixture(scope="module")
def finished(tmp_path_factory, dataroots) -> Path:
    """A directory holding ``results/`` and ``saves/`` of a finished tiny CACL run on CIFAR10 (2 tasks)."""
    directory = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        status = iBatchLearn.main([*QUICK, *DATASET_FLAGS["CIFAR10"], "--dataroot", str(dataroots("CIFAR10")),
                                   "--exp_name", "done"])
    assert status == 0
    return directory


@pytest.fixture
def workdir(tmp_path, finished, monkeypatch) -> Path:
    """A fresh copy of the finished experiment, as the working directory; no Debian Fashion-MNIST to fall back on."""
    work = tmp_path / "work"
    for top in ("results", "saves"):
        shutil.copytree(finished / top, work / top)
    monkeypatch.chdir(work)
    monkeypatch.setattr(dataloaders.datasets, "DEBIAN_FASHION_MNIST_FOLDER", str(tmp_path / "no-debian-folder"))
    return work


def prepare(case: Case, tmp_path: Path, workdir: Path, dataroots, overwrite: bool = True) -> Tuple[list, list]:
    """The full argv of ``case`` and its expected message fragments, after damaging copies of what it damages."""
    data, names = dataroots(case.dataset), {}
    if case.data is not None:
        damage, relative = case.data
        data = tmp_path / "data"
        shutil.copytree(dataroots(case.dataset), data)
        damage(data / relative)
        names["file"] = str(data / relative)
    if case.checkpoint is not None:
        damage, file_name = case.checkpoint
        checkpoint = tmp_path / "checkpoint"
        shutil.copytree(workdir / "saves" / EXPERIMENT, checkpoint)
        damage(checkpoint / file_name)
        names["ckpt"] = str(checkpoint)
    names["data"] = str(data)
    argv = [*QUICK, *DATASET_FLAGS[case.dataset], "--dataroot", "{data}", "--exp_name", "done",
            *(["--overwrite"] if overwrite else []), *case.argv]
    return [arg.format(**names) for arg in argv], [fragment.format(**names) for fragment in case.expect]


def outputs(workdir: Path) -> dict:
    """Every file under ``results/`` and ``saves/`` with its bytes."""
    return {str(path.relative_to(workdir)): path.read_bytes()
            for top in ("results", "saves") for path in sorted((workdir / top).rglob("*")) if path.is_file()}


def fake_cuda(monkeypatch, devices: int) -> None:
    """Make torch see ``devices`` CUDA devices (none: CUDA absent), whatever this machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: devices > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)


# ---------------------------------------------------------------- tests


def run_in_process(argv: list, capsys) -> Tuple[int, str]:
    """``iBatchLearn.main(argv)``: its exit status and what it wrote to stderr."""
    status = iBatchLearn.main(argv)
    return status, capsys.readouterr().err


def assert_one_line_error(status: int, err: str, expected: list) -> None:
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in expected:
        assert fragment in err


def cases_named(*ids: str) -> list:
    """The :data:`CASES` of these ids."""
    return [param for param in CASES if param.id in ids]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_one_line_error_that_damages_nothing(case, tmp_path, workdir, dataroots, capsys, monkeypatch):
    argv, expected = prepare(case, tmp_path, workdir, dataroots)
    fake_cuda(monkeypatch, case.cuda_devices)
    before = outputs(workdir)
    assert {f"results/{EXPERIMENT}/output_final.json", f"saves/{EXPERIMENT}/final_model.pth"} <= set(before)
    status, err = run_in_process(argv, capsys)
    assert_one_line_error(status, err, expected)
    assert outputs(workdir) == before


@pytest.mark.parametrize("case", cases_named(*SUBPROCESS_CASES))
def test_no_traceback_reaches_the_terminal(case, tmp_path, workdir, dataroots):
    assert case.cuda_devices == 0
    argv, expected = prepare(case, tmp_path, workdir, dataroots)
    before = outputs(workdir)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "iBatchLearn.py"), *argv], cwd=workdir,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if "error" in line.lower()] == [lines[-1]]  # log lines precede the one error line
    assert lines[-1].startswith("error: ")
    for fragment in expected:
        assert fragment in lines[-1]
    assert outputs(workdir) == before




@pytest.mark.parametrize("case", cases_named(
    "truncated-CIFAR10-data_batch_3", "split-3-3", "unknown-model_name", "unknown-agent_type", "unknown-optimizer",
    "energy_sv-above-one", "gpuid-without-cuda"))
def test_bad_input_is_named_even_beside_a_finished_experiment(case, tmp_path, workdir, dataroots, capsys,
                                                              monkeypatch):
    """Without ``--overwrite`` the user hears about the bad input, not only about the finished experiment."""
    argv, expected = prepare(case, tmp_path, workdir, dataroots, overwrite=False)
    fake_cuda(monkeypatch, case.cuda_devices)
    before = outputs(workdir)
    status, err = run_in_process(argv, capsys)
    assert_one_line_error(status, err, expected)
    assert outputs(workdir) == before




@pytest.mark.parametrize("case", cases_named(
    "truncated-CIFAR10-data_batch_3", "missing-multidataset-notMNIST.zip", "split-3-3", "unknown-model_name",
    "unknown-optimizer", "energy_sv-above-one", "gpuid-without-cuda", "loadmodel-truncated-final_model"))
def test_bad_input_under_overwrite_keeps_an_interrupted_runs_checkpoints(case, tmp_path, workdir, dataroots, capsys,
                                                                         monkeypatch):
    """``--overwrite`` replaces an experiment by a new run; a bad input starts no run, so it must replace nothing."""
    interrupted = workdir / "saves" / "done" / "checkpoints" / "checkpoint-7.pth"
    interrupted.parent.mkdir(parents=True)
    interrupted.write_bytes(b"the latest checkpoint of an interrupted run of --exp_name done")
    argv, expected = prepare(case, tmp_path, workdir, dataroots)
    fake_cuda(monkeypatch, case.cuda_devices)
    before = outputs(workdir)
    status, err = run_in_process(argv, capsys)
    assert_one_line_error(status, err, expected)
    assert outputs(workdir) == before


def test_default_gpuid_falls_back_to_the_cpu_without_cuda(monkeypatch):
    fake_cuda(monkeypatch, 0)
    assert pick_device([0]) == torch.device("cpu")
    assert pick_device([-1]) == torch.device("cpu")


# ---------------------------------------------------------------- the sweep command (python -m cluster.sweep)


def another_sweep(sweep_dir: Path, driver_argv: list) -> None:
    """``sweep_dir`` holds the record of a sweep of other flags (--sparse_wt 0.4)."""
    Sweep.plan(str(sweep_dir), read_config([*driver_argv, "--sparse_wt", "0.4"])).save()


def some_notes(sweep_dir: Path, driver_argv: list) -> None:
    sweep_dir.mkdir()
    (sweep_dir / "notes.txt").write_text("not a sweep")


def empty_folder(sweep_dir: Path, driver_argv: list) -> None:
    sweep_dir.mkdir()


SWEEP_CASES = [
    pytest.param(["--cluster", "pbs", "--sweep_dir", "sw"], ["argument --cluster: invalid choice: 'pbs'"], None,
                 id="unknown-cluster"),
    pytest.param(["--cluster", "local", "--sweep_dir", "sw"], ["sw holds another sweep", "--sparse_wt 0.4 (now 0.01)",
                                                               "choose another --sweep_dir"], another_sweep,
                 id="sweep_dir-of-another-sweep"),
    pytest.param(["--cluster", "local", "--sweep_dir", "sw"], ["--sweep_dir sw holds something other than a sweep"],
                 some_notes, id="sweep_dir-of-other-files"),
    pytest.param(["--status", "sw"], ["sw holds no sweep (no sweep.json)"], empty_folder, id="status-of-no-sweep"),
    pytest.param(["--status", "sw"], ["sw holds no sweep (no sweep.json)"], None, id="status-of-no-folder"),
    pytest.param(["--collect", "sw"], ["sw holds no sweep (no sweep.json)"], empty_folder, id="collect-of-no-sweep"),
    pytest.param(["--sweep_dir", "sw"], ["give --cluster slurm|local|debug and --sweep_dir DIR"], None,
                 id="no-cluster"),
    pytest.param(["--cluster", "slurm", "--sweep_dir", "sw"], ["--cluster slurm: SLURM's srun is not on this"], None,
                 id="slurm-without-srun"),
    pytest.param(["--cluster", "local", "--sweep_dir", "sw", "--time", "0"], ["--time must be positive, got 0"],
                 None, id="time-zero"),
    pytest.param(["--cluster", "local", "--sweep_dir", "sw", "--debug"], ["a sweep trains"], None, id="debug-search"),
    pytest.param(["--cluster", "local", "--sweep_dir", "sw", "--energy_sv", "2"], ["--energy_sv must lie in (0, 1)"],
                 None, id="driver-flag-checked"),
]


def every_file(directory: Path) -> dict:
    return {str(path.relative_to(directory)): path.read_bytes() if path.is_file() else None
            for path in sorted(directory.rglob("*"))}


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no-overwrite"])
@pytest.mark.parametrize("argv, expected, prepare_sweep_dir", SWEEP_CASES)
def test_bad_sweep_input_is_a_one_line_error_that_writes_nothing(argv, expected, prepare_sweep_dir, overwrite,
                                                                 workdir, dataroots, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(workdir / "no-slurm-here"))
    driver_argv = [*QUICK, *DATASET_FLAGS["CIFAR10"], "--dataroot", str(dataroots("CIFAR10")), "--exp_name", "done"]
    if prepare_sweep_dir is not None:
        prepare_sweep_dir(workdir / "sw", driver_argv)
    with_driver_flags = [] if argv[0] in ("--status", "--collect") else driver_argv + ["--overwrite"] * overwrite
    before = every_file(workdir)
    status = cluster.sweep.main([*with_driver_flags, *argv])
    assert_one_line_error(status, capsys.readouterr().err, expected)
    assert every_file(workdir) == before


def test_a_sweep_that_would_replace_a_finished_experiment_stops(workdir, dataroots, capsys):
    before = every_file(workdir)
    status = cluster.sweep.main([*QUICK, *DATASET_FLAGS["CIFAR10"], "--dataroot", str(dataroots("CIFAR10")),
                                    "--exp_name", "done", "--cluster", "local", "--sweep_dir", "sw"])
    assert_one_line_error(status, capsys.readouterr().err, [f"results/{EXPERIMENT}/output_final.json holds a "
                                                           "finished experiment", "--overwrite"])
    assert every_file(workdir) == before
