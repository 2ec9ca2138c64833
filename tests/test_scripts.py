"""The shell scripts users run: the paper's settings with a 1-epoch schedule appended, on tiny official files."""
import json
import os
import subprocess
import sys

import pytest
import torch

from benchmarks import benchmark
from helpers import QUICK, REFERENCE, REPO_ROOT, needs_fashion_mnist
from dataloaders.synthetic import write_cifar100, write_miniimagenet, write_multidataset

ONE_EPOCH = [*QUICK, "--repeat", "1"]
TWO_TASKS = {script: ["--first_split_size", "50", "--other_split_size", "50"]
             for script in ("cifar100_train.sh", "miniimagenet_train.sh")}


def run_script(name, cwd, *argv):
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / name), *argv], cwd=cwd, text=True,
                            capture_output=True, timeout=600, env={**os.environ, "CACL_PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("script, writer, experiment", [
    ("cifar100_train.sh", write_cifar100, "CNet_CIFAR100_finalmodel_sparse_wt0.1"),
    ("miniimagenet_train.sh", lambda root: write_miniimagenet(root, n_per_class_train=1, n_per_class_test=1),
     "miniImageNet_final_sparse_wt0.1"),
    ("5sequencedataset_train.sh", write_multidataset, "5sequencedataset_sparse_wt0.1"),
])
def test_train_script_runs_with_one_epoch(tmp_path, script, writer, experiment):
    writer(str(tmp_path / "data"))
    # two tasks instead of twenty keep the test quick; the script's other settings stay as published
    out = run_script(script, tmp_path, *ONE_EPOCH, "--sparse_wt", "0.1", *TWO_TASKS.get(script, []))
    assert "average" in out
    record = json.loads((tmp_path / "results" / experiment / "output_final.json").read_text())
    assert record["repeats"] == 1
    assert (tmp_path / "saves" / experiment / "final_model.pth").is_file()


def test_cifar100_eval_script_on_the_published_checkpoint(tmp_path):
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is absent")
    write_cifar100(str(tmp_path / "data"))
    out = run_script("cifar100_eval.sh", tmp_path, str(REFERENCE), "--gpuid", "-1")
    assert "model size: 2.599 MB" in out and "average" in out


@needs_fashion_mnist
def test_our_fashion_mnist_checkpoint_evaluates_on_the_real_test_set(tmp_path):
    """Needs Debian's dataset-fashion-mnist, which scripts/run_tests.sh installs where apt can."""
    out = run_script("fashionmnist_eval.sh", tmp_path)
    assert "average     99.20" in out and "model size: 5.304 MB" in out


def test_benchmark_prints_every_row_and_writes_the_json(tmp_path):
    out = run_script("benchmark.sh", tmp_path, "--quick", "--no_memory", "--device", "cpu")
    figures = json.loads((tmp_path / "results" / "benchmark.json").read_text())
    rows = ("floor", "svd_step", "train_path", "train_path_task20", "train_path_trained", "eval_path",
            "eval_pruned", "eval_floor", "eval_two_convolutions", "eval_composed", "eval_path_agnostic", "eval_shared",
            "eval_shared_agnostic")
    assert all(figures[row] > 0 for row in rows)
    aten = figures["aten_ops_per_step"]
    assert 0 < aten["dense"] < aten["svd_task1"] < aten["svd_task20"]
    assert f"ATen operations per training step: dense {aten['dense']}, svd_task1 {aten['svd_task1']}" in out
    assert "4b, one composed kernel a layer" in out
    assert sorted(figures["first_step_s"]) == ["floor", "svd_step"] and all(figures["first_step_s"].values())
    assert f"first step (s, eager): floor {figures['first_step_s']['floor']:.2f}" in out
    rounds = figures["training_rounds"]
    assert list(rounds) == list(rows[:5]) and all(rounds[row] == [figures[row]] for row in rounds)  # one quick round
    assert "rows 1-3c in turn in each of 1 rounds; worst / best round: 1 1.00, 2 1.00, 3 1.00, 3b 1.00, 3c 1.00" in out
    assert figures["ratios_in_rounds"]["train_path_task20"] == pytest.approx(
        figures["train_path_task20"] / figures["floor"])
    assert figures["peak_rss_mb"] is None and figures["device"] == "cpu" and figures["channels_last"]
    assert "dense Net step" in out and "evaluate 20 tasks" in out and "[quick: not a measurement]" in out
    assert len(figures["real_run"]) == 5 and all(rate > 0 for rate in figures["real_run"].values())
    fifth = list(figures["real_run"].values())[4]
    assert figures["trained_to_real"] == pytest.approx(figures["train_path_trained"] / fifth)
    assert figures["trained_data"].startswith("synthetic") and "4 tasks trained" in out and "real run" in out


def test_rows_are_measured_in_turn_within_each_round():
    """``interleaved``: round 0 of every row, then round 1 of every row (a drift of the machine reaches all alike)."""
    calls = []
    rates = benchmark.interleaved({row: lambda round_, row=row: calls.append((row, round_)) or 10.0 * round_ + len(row)
                                   for row in ("a", "bb")}, rounds=2)
    assert calls == [("a", 0), ("bb", 0), ("a", 1), ("bb", 1)]
    assert rates == {"a": [1.0, 11.0], "bb": [2.0, 12.0]}


def test_a_rows_ratio_is_the_median_of_its_rounds_ratios():
    """Rounds' ratios 0.9, 0.5, 0.8 give 0.8 (the best rounds' ratio, 100 / 200, would be 0.5)."""
    ratios = benchmark.ratios_in_rounds({"floor": [100.0, 200.0, 100.0], "row": [90.0, 100.0, 80.0]})
    assert ratios == {"floor": 1.0, "row": pytest.approx(0.8)}


def test_the_trained_network_row_trains_its_tasks_as_the_real_run_does():
    """Row 3c's network is row 6's run after its first four tasks: the same tasks in the same order, the same
    components kept by each."""
    with benchmark.fashion_mnist_root(benchmark.QUICK) as (dataroot, _):
        agent, stream = benchmark.trained_agent(torch.device("cpu"), benchmark.Speed(), benchmark.QUICK, dataroot)
        record = benchmark.real_run_record(torch.device("cpu"), benchmark.Speed(), benchmark.QUICK, dataroot, None)
    assert agent.tasks_trained == stream.names[:4] == list(record["acc_matrix"])[:4]
    assert {str(index): used for index, used in agent.chann_used.items()} == {
        str(index): record["channels"][str(index)] for index in range(4)}
    assert list(benchmark.rates_in_training_order(record)) == stream.names
