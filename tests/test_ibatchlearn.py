"""The driver end to end: flags in, results JSON, checkpoints and the printed table out."""
import json
import os
import subprocess
import sys

import pytest
import torch

from helpers import QUICK as ONE_EPOCH
from agents.SVDNet import SVDNet
from helpers import REFERENCE, REPO_ROOT, run_driver

QUICK = [*ONE_EPOCH, "--batch_size", "16"]


def test_whole_run_on_cifar100_writes_every_output(workdir, cifar100_root, capsys):
    status, out, _ = run_driver(capsys, *QUICK, "--dataset", "CIFAR100", "--dataroot", cifar100_root,
                                "--repeat", "2", "--sparse_wt", "0.1", "--exp_name", "tiny", "--grow_network")
    assert status == 0
    experiment = "tiny_sparse_wt0.1"
    runs = [json.loads((workdir / "results" / experiment / f"output_run{r}.json").read_text()) for r in range(2)]
    for run in runs:
        assert set(run) >= {"channels", "acc", "avg_acc", "all_rank", "model_size", "acc_matrix"}
        assert len(run["acc"]) == 20 and len(run["acc_matrix"]) == 20
        assert run["avg_acc"] == pytest.approx(sum(run["acc"].values()) / 20)
        assert list(run["acc"]) == list(run["acc_matrix"])  # training order
    # the published order for seed 1, and another order for the second run (seed 2)
    assert list(runs[0]["acc"])[:5] == ["12", "6", "18", "20", "10"]
    assert list(runs[1]["acc"]) != list(runs[0]["acc"])
    final = json.loads((workdir / "results" / experiment / "output_final.json").read_text())
    assert final["avg_acc"] == pytest.approx((runs[0]["avg_acc"] + runs[1]["avg_acc"]) / 2)
    # chann (published): per task name, the components it added to each layer, averaged over the repeats
    position = [{task: str(index) for index, task in enumerate(run["acc"])} for run in runs]
    assert list(final["chann"]) == list(runs[0]["acc"])
    for task, mean in final["chann"].items():
        added = [run["channels"][position[r][task]] for r, run in enumerate(runs)]
        assert mean == pytest.approx([(a + b) / 2 for a, b in zip(*added)])
    assert all(run["all_rank"] == [18, 57, 104, 115, 170] for run in runs)
    assert [run["final_rank"] for run in runs][1] == torch.load(workdir / "saves" / experiment / "rank.pth")
    assert final["std_acc"] == pytest.approx(abs(runs[0]["avg_acc"] - runs[1]["avg_acc"]) / 2)
    saves = workdir / "saves" / experiment
    for name in ("final_model.pth", "rank.pth", "task_identifiers.pth", "task_name_count.pth", "chann_used.pth"):
        assert (saves / name).is_file()
    rank = torch.load(saves / "rank.pth")
    assert rank == runs[1]["final_rank"]
    state = torch.load(saves / "final_model.pth")
    assert [tuple(state[f"{conv}.Sigma"].shape) for conv in ("conv1", "conv2", "conv3", "conv4", "conv6")] == \
        [(r,) for r in rank]
    assert list(torch.load(saves / "task_name_count.pth")) == list(runs[1]["acc"])
    assert sorted(os.listdir(workdir / "runs" / experiment)) == ["run0", "run1"]
    assert "average" in out and "model size" in out


def test_saved_model_evaluates_to_the_accuracies_it_finished_with(workdir, cifar100_root, capsys):
    common = ["--dataset", "CIFAR100", "--dataroot", cifar100_root, "--first_split_size", "50",
              "--other_split_size", "50"]
    status, _, _ = run_driver(capsys, *QUICK, *common, "--repeat", "1", "--exp_name", "roundtrip")
    assert status == 0
    trained = json.loads((workdir / "results" / "roundtrip_sparse_wt0.01" / "output_run0.json").read_text())
    status, out, _ = run_driver(capsys, *QUICK, *common, "--loadmodel", "roundtrip_sparse_wt0.01")
    assert status == 0
    evaluated = json.loads((workdir / "results" / "roundtrip_sparse_wt0.01" / "output_eval.json").read_text())
    assert evaluated["acc"] == trained["acc"]
    assert evaluated["model_size"] == pytest.approx(trained["model_size"])


def test_published_checkpoint_loads_and_evaluates(workdir, cifar100_root, capsys):
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is absent")
    status, out, err = run_driver(capsys, "--gpuid", "-1", "--dataset", "CIFAR100", "--dataroot", cifar100_root,
                                  "--loadmodel", REFERENCE)
    assert status == 0, err
    record = json.loads((workdir / "results" / REFERENCE.name / "output_eval.json").read_text())
    assert list(record["acc"])[:3] == ["12", "6", "18"] and len(record["acc"]) == 20
    assert record["model_size"] == pytest.approx(2.60, abs=0.006)
    assert record["final_rank"] == [118, 291, 192, 255, 170]
    assert record["all_rank"] == [18, 57, 104, 115, 170]  # the formula ranks, as the published code writes
    assert "model size: 2.599 MB" in out


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "CIFAR1000"], "unknown dataset"),
    (["--model_type", "resnet"], "unknown --model_type"),
    (["--schedule", "3", "2"], "--schedule"),
    (["-e", "1.5"], "--energy_sv"),
    (["--batch_size", "0"], "--batch_size"),
    (["--lr", "nan"], "--lr"),
    (["--optimizer", "Adamm"], "unknown --optimizer"),
    (["--loadmodel", "no_such_model"], "no such checkpoint"),
    (["--first_split_size", "3", "--other_split_size", "3"], "do not divide"),
    (["--incremental_class"], "--force_out_dim"),
    (["--debug", "--e_search", "0.1"], "--e_search"),
])
def test_user_mistakes_are_one_line_errors(workdir, cifar100_root, capsys, argv, message):
    base = ["--gpuid", "-1", "--dataset", "CIFAR100", "--dataroot", cifar100_root, "--schedule", "1", "--repeat", "1"]
    status, _, err = run_driver(capsys, *base, *argv)
    assert status == 2
    assert err.startswith("error: ") and message.lower() in err.lower() and err.count("\n") == 1
    assert not (workdir / "results").exists()


def test_missing_dataset_is_an_error_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "iBatchLearn.py"), "--gpuid", "-1",
                             "--dataset", "CIFAR100", "--dataroot", str(tmp_path / "nothing")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "CIFAR100" in result.stderr


def test_five_dataset_sequence_end_to_end(workdir, tmp_path_factory, capsys):
    from dataloaders.synthetic import write_multidataset

    root = str(tmp_path_factory.mktemp("five"))
    write_multidataset(root)
    status, out, err = run_driver(capsys, *QUICK, "--dataset", "multidataset", "--dataroot", root, "--repeat", "1",
                                  "--first_split_size", "10", "--other_split_size", "10", "--grow_network",
                                  "--no_rand_split_order", "--exp_name", "five")
    assert status == 0, err
    run = json.loads((workdir / "results" / "five_sparse_wt0.01" / "output_run0.json").read_text())
    assert list(run["acc"]) == ["1", "2", "3", "4", "5"]


def test_miniimagenet_end_to_end_uses_84_pixel_inputs(workdir, tmp_path_factory, capsys):
    from dataloaders.synthetic import write_miniimagenet

    root = str(tmp_path_factory.mktemp("mini"))
    write_miniimagenet(root, n_per_class_train=1, n_per_class_test=1)
    status, out, err = run_driver(capsys, *QUICK, "--dataset", "miniImageNet", "--dataroot", root, "--repeat", "1",
                                  "--first_split_size", "50", "--other_split_size", "50", "--exp_name", "mini")
    assert status == 0, err
    state = torch.load(workdir / "saves" / "mini_sparse_wt0.01" / "final_model.pth")
    assert state["last.1.0.weight"].shape == (50, 256 * 64)


def test_finished_experiment_is_not_overwritten_without_flag(workdir, cifar100_root, capsys):
    argv = [*QUICK, "--dataset", "CIFAR100", "--dataroot", cifar100_root, "--repeat", "1", "--first_split_size", "50",
            "--other_split_size", "50", "--exp_name", "twice"]
    assert run_driver(capsys, *argv)[0] == 0
    final = workdir / "results" / "twice_sparse_wt0.01" / "output_final.json"
    before = final.read_text()
    status, _, err = run_driver(capsys, *argv)
    assert status == 2 and "--overwrite" in err and final.read_text() == before
    assert run_driver(capsys, *argv, "--overwrite")[0] == 0


@pytest.mark.parametrize("flag, deterministic", [(["--benchmark"], True), ([], False)])
def test_benchmark_makes_cudnn_deterministic_as_published(workdir, cifar100_root, capsys, monkeypatch, flag,
                                                          deterministic):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", not deterministic)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", deterministic)
    status, _, err = run_driver(capsys, *QUICK, "--dataset", "CIFAR100", "--dataroot", cifar100_root, "--repeat", "1",
                                "--first_split_size", "50", "--other_split_size", "50", *flag)
    assert status == 0, err
    assert torch.backends.cudnn.deterministic is deterministic and torch.backends.cudnn.benchmark is not deterministic


def test_nan_loss_stops_with_the_task_epoch_iteration_and_term(workdir, cifar100_root, capsys, monkeypatch):
    regularization = SVDNet.regularization

    def orthogonality_becomes_nan(agent):
        terms = regularization(agent)
        return {**terms, "orthogonality": terms["orthogonality"] * float("nan")}

    monkeypatch.setattr(SVDNet, "regularization", orthogonality_becomes_nan)
    status, _, err = run_driver(capsys, *QUICK, "--dataset", "CIFAR100", "--dataroot", cifar100_root, "--repeat", "1",
                                "--first_split_size", "50", "--other_split_size", "50")
    assert status == 2 and err.count("\n") == 1
    assert "epoch 1, iteration 1" in err and "orthogonality" in err and "sparsity" not in err


def test_a_nan_loss_weight_is_refused_before_anything_runs(workdir, cifar100_root, capsys):
    status, _, err = run_driver(capsys, *QUICK, "--dataset", "CIFAR100", "--dataroot", cifar100_root, "--perp_wt",
                                "nan")
    assert status == 2 and "--perp_wt must be 0 or more" in err and not os.listdir(workdir)
