"""``python -m deployment.export``: one ONNX and one TorchScript file per task that give the factorized model's
logits (in ONNX Runtime and in PyTorch), ``summary.json`` with the multiply-adds of the formula, and one-line errors
that write nothing."""
import json
import os
import shutil
import warnings
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch

import iBatchLearn
from helpers import QUICK, REFERENCE
from dataloaders import load_dataset
from deployment import export
from models import build_model
from models.deployable import uses_two_convolutions

SMALL_RUN = "small_sparse_wt0.01"
NET_POSITIONS = [30 * 30, 28 * 28, 12 * 12, 10 * 10, 4 * 4]
"""Output positions of Net_SVD's five convolutions on 32×32 inputs."""


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, cifar10_root) -> Path:
    """``saves/small_sparse_wt0.01/`` of a 3-task, 1-epoch CIFAR-10 run with --grow_network."""
    folder = tmp_path_factory.mktemp("small_run")
    here = os.getcwd()
    os.chdir(folder)
    try:
        status = iBatchLearn.main([*QUICK, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--repeat", "1",
                                   "--first_split_size", "4", "--other_split_size", "3", "--batch_size", "16",
                                   "--grow_network", "--exp_name", "small"])
    finally:
        os.chdir(here)
    assert status == 0
    return folder / "saves" / SMALL_RUN


def factorized_logits(directory: Path, image_size: int, inputs: torch.Tensor) -> dict:
    """``{task: logits}`` of the saved model through ``SVD_Conv2d`` (each task's prefix of components)."""
    state = torch.load(directory / "final_model.pth")
    identifiers = torch.load(directory / "task_identifiers.pth")
    model = build_model("customnet_SVD", "Net_SVD", image_size=image_size, rank=torch.load(directory / "rank.pth"))
    model.add_heads({key.split(".")[1]: tensor.shape[0] for key, tensor in state.items() if key.endswith("0.weight")})
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return {str(task): model(inputs, str(task), identifiers[index])
                for task, index in torch.load(directory / "task_name_count.pth").items()}


def exported_logits(out: Path, task: str, inputs: torch.Tensor) -> dict:
    """The logits of the task's ONNX file in ONNX Runtime and of its TorchScript file in PyTorch."""
    model = onnx.load(str(out / f"task{task}.onnx"))
    onnx.checker.check_model(model, full_check=True)
    session = onnxruntime.InferenceSession(str(out / f"task{task}.onnx"), providers=["CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(out / f"task{task}.pt"))
    with torch.no_grad():
        return {"onnxruntime": torch.from_numpy(session.run(None, {"images": inputs.numpy()})[0]),
                "torchscript": scripted(inputs)}


def assert_relative_close(actual, expected, label: str, tolerance=1e-5):
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()),
                               msg=lambda message: f"{label}: {message}")


def run_export(capsys, *argv):
    status = export.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_every_task_of_a_small_run_exports_with_the_factorized_logits(small_run, cifar10_root, tmp_path, capsys):
    out = tmp_path / "export"
    threads = torch.get_num_threads()
    status, printed, err = run_export(capsys, small_run, "--out", out, "--dataset", "CIFAR10", "--repeats", "2",
                                      "--warmup", "0", "--threads", str(threads + 1))
    assert status == 0, err
    assert torch.get_num_threads() == threads  # the measurement's thread count does not leak into later work
    test_set = load_dataset("CIFAR10", cifar10_root)[1]
    inputs = test_set.transform(test_set.images[:16])
    expected = factorized_logits(small_run, 32, inputs)
    summary = json.loads((out / "summary.json").read_text())
    order = torch.load(small_run / "task_name_count.pth")
    assert [row["task"] for row in summary["tasks"]] == sorted(expected, key=order.get)
    for task, logits in expected.items():
        for engine, actual in exported_logits(out, task, inputs).items():
            assert_relative_close(actual, logits, f"task {task}, {engine}")
        single = exported_logits(out, task, inputs[:1])
        assert_relative_close(single["onnxruntime"], logits[:1], f"task {task}, onnxruntime at batch 1")
    shapes = [(27, 64), (576, 64), (576, 128), (1152, 128), (512, 256)]  # (in·k·k, out) of Net_SVD
    for row in summary["tasks"]:
        formula = sum(p * (k * (f + o) if 0 < k and 4 * k * (f + o) <= 3 * o * f else o * f)
                      for (f, o), k, p in zip(shapes, row["components"], NET_POSITIONS))
        assert row["macs"] == formula + 1024 * len(expected[row["task"]][0])
        assert row["two_convolutions"] == [uses_two_convolutions(f, o, k, "cpu")
                                           for (f, o), k in zip(shapes, row["components"])]
        assert {form: file["bytes"] for form, file in row["files"].items()} == {
            "onnx": (out / f"task{row['task']}.onnx").stat().st_size,
            "torchscript": (out / f"task{row['task']}.pt").stat().st_size}
        latencies = [row["latency_ms"][engine][batch] for engine in ("pytorch", "onnxruntime") for batch in ("1", "64")]
        assert all(milliseconds > 0 for milliseconds in latencies)
        assert row["input"] == {"shape": [3, 32, 32], "mean": [0.491, 0.482, 0.447], "std": [0.247, 0.243, 0.262]}
    dense = summary["dense"]
    first_task_classes = len(expected[summary["tasks"][0]["task"]][0])
    assert dense["macs"] == sum(o * f * p for (f, o), p in zip(shapes, NET_POSITIONS)) + 1024 * first_task_classes
    assert len(printed.splitlines()) == 2 + len(expected) + 1 and "dense" in printed.splitlines()[-1]


def test_the_published_checkpoint_exports_every_task_with_the_factorized_logits(cifar100_root, tmp_path, capsys):
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is absent")
    out = tmp_path / "export"
    status, printed, err = run_export(capsys, REFERENCE, "--out", out, "--dataset", "CIFAR100", "--repeats", "0")
    assert status == 0, err
    test_set = load_dataset("CIFAR100", cifar100_root)[1]
    inputs = test_set.transform(test_set.images[:8])
    expected = factorized_logits(REFERENCE, 32, inputs)
    assert len(expected) == 20
    for task, logits in expected.items():
        for engine, actual in exported_logits(out, task, inputs).items():
            assert_relative_close(actual, logits, f"task {task}, {engine}")
    summary = json.loads((out / "summary.json").read_text())
    ratios = [row["macs"] / summary["dense"]["macs"] for row in summary["tasks"]]
    assert [round(ratios[0], 2), round(ratios[1], 2), round(ratios[-1], 2)] == [0.15, 0.27, 0.99]  # the issue's


def damaged_copy(small_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(small_run, copy)
    (copy / "task_identifiers.pth").unlink()
    return copy


BAD_EXPORTS = {
    "no-such-checkpoint": (["no_such_dir"], "checkpoint no_such_dir: no such checkpoint directory"),
    "task-that-does-not-exist": (["{ckpt}", "--tasks", "99"], "has no task 99"),
    "another-architecture": (["{ckpt}", "--model_type", "vgg_16_bn", "--model_name", "vgg16_bn_cifar100_SVD"],
                             "it is another architecture"),
    "a-dense-model": (["{ckpt}", "--model_type", "customnet", "--model_name", "Net"], "is not a CACL model"),
    "another-input-size": (["{ckpt}", "--dataset", "miniImageNet"], "does not fit this model and dataset"),
    "unknown-dataset": (["{ckpt}", "--dataset", "ImageNet"], "unknown dataset 'ImageNet'"),
    "unknown-format": (["{ckpt}", "--format", "tflite"], "invalid choice: 'tflite'"),
    "no-threads": (["{ckpt}", "--threads", "0"], "--threads must be at least 1"),
    "missing-piece": (["{damaged}"], "lacks task_identifiers.pth"),
}


@pytest.mark.parametrize("case", list(BAD_EXPORTS))
def test_bad_export_is_a_one_line_error_that_writes_nothing(case, small_run, tmp_path, capsys):
    argv, expected = BAD_EXPORTS[case]
    damaged = damaged_copy(small_run, tmp_path) if "{damaged}" in argv else None
    argv = [arg.format(ckpt=small_run, damaged=damaged) for arg in argv]
    out = tmp_path / "export"
    status, printed, err = run_export(capsys, argv[0], "--out", out, "--dataset", "CIFAR10", *argv[1:])
    assert status == 2 and printed == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert not out.exists()
