"""Backward transfer and forgetting from the accuracy matrix, and what the results files and table carry."""
import json

import pytest

from helpers import QUICK, run_driver
from evaluation.metrics import bwt, forgetting
from evaluation.results import final_record

SEQUENTIAL = {
    "2": {"2": 90.0},
    "1": {"2": 70.0, "1": 80.0},
    "3": {"2": 85.0, "1": 60.0, "3": 95.0},
}
"""Three tasks learnt in the order 2, 1, 3 (rows in training order): task 2 drops then recovers, task 1 drops."""


def test_bwt_is_the_mean_final_minus_just_learnt_accuracy_of_the_earlier_tasks():
    assert bwt(SEQUENTIAL) == pytest.approx(((85 - 90) + (60 - 80)) / 2)


def test_forgetting_is_the_mean_best_earlier_minus_final_accuracy():
    assert forgetting(SEQUENTIAL) == pytest.approx(((90 - 85) + (80 - 60)) / 2)


def test_a_task_that_improves_later_has_negative_forgetting_and_positive_bwt():
    improving = {"1": {"1": 50.0}, "2": {"1": 70.0, "2": 90.0}}
    assert bwt(improving) == pytest.approx(20.0) and forgetting(improving) == pytest.approx(-20.0)


def test_single_tasks_and_separate_models_hold_no_forgetting():
    single_tasks = {"1": {"1": 80.0}, "2": {"2": 70.0}, "3": {"3": 60.0}}
    separate_models = {"1": {"1": 80.0}, "2": {"1": 80.0, "2": 70.0}}
    for matrix in (single_tasks, separate_models):
        assert bwt(matrix) == 0.0 and forgetting(matrix) == 0.0


def test_no_earlier_task_means_no_bwt_or_forgetting():
    for matrix in ({"1": {"1": 80.0}}, {"All": {"1": 80.0, "2": 70.0}}, {}):
        assert bwt(matrix) is None and forgetting(matrix) is None


def test_final_record_holds_the_means_and_spread_over_repeats():
    runs = [{"acc": {"1": 50.0}, "avg_acc": 50.0, "model_size": 1.0, "dense_models_size": 2.0, "bwt": -4.0,
             "forgetting": 4.0, "seconds": 10.0, "task_seconds": {"1": 10.0}},
            {"acc": {"1": 60.0}, "avg_acc": 60.0, "model_size": 1.0, "dense_models_size": 2.0, "bwt": -2.0,
             "forgetting": 1.0, "seconds": 14.0, "task_seconds": {"1": 14.0}}]
    final = final_record(runs)
    assert (final["bwt"], final["std_bwt"]) == (-3.0, 1.0)
    assert (final["forgetting"], final["std_forgetting"]) == (2.5, 1.5)
    assert (final["seconds"], final["task_seconds"]) == (12.0, {"1": 12.0})
    assert final["images_per_s"] == {}  # results written before images per second were recorded
    runs[0]["images_per_s"], runs[1]["images_per_s"] = {"1": 100.0}, {"1": 50.0}
    assert final_record(runs)["images_per_s"] == {"1": 75.0}


def test_cacl_has_exactly_zero_bwt_and_forgetting_after_three_tasks(workdir, cifar10_root, capsys):
    status, out, _ = run_driver(capsys, *QUICK, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--batch_size",
                                "10", "--first_split_size", "4", "--other_split_size", "3", "--repeat", "1",
                                "--exp_name", "zero", "--grow_network")
    assert status == 0
    run = json.loads((workdir / "results" / "zero_sparse_wt0.01" / "output_run0.json").read_text())
    assert len(run["acc_matrix"]) == 3
    assert run["bwt"] == 0.0 and run["forgetting"] == 0.0
    assert "BWT: 0.00 ± 0.00, forgetting: 0.00 ± 0.00" in out
    assert list(run["task_seconds"]) == list(run["acc_matrix"]) and all(s > 0 for s in run["task_seconds"].values())
    assert run["seconds"] == pytest.approx(sum(run["task_seconds"].values()))
    trained = {task: rate * run["task_seconds"][task] for task, rate in run["images_per_s"].items()}
    assert trained == pytest.approx({"1": 40, "2": 30, "3": 30})  # 10 training images a class
    sizes = list(run["model_size_after_task"].values())
    assert sizes == sorted(sizes) and sizes[-1] == run["model_size"]
    assert list(run["dense_models_size_after_task"].values())[-1] == run["dense_models_size"]
    environment = run["environment"]
    assert environment["flags"]["exp_name"] == "zero" and environment["flags"]["first_split_size"] == 4
    assert environment["device"] == "cpu" and environment["threads"] >= 1 and environment["torch"]
    assert environment["git_commit"] is None or len(environment["git_commit"].split("+")[0]) == 40
    assert run["setting"] == {"sparse_wt": 0.01}
