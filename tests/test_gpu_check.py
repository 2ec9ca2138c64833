"""``scripts/gpu_check.sh`` rehearsed on the CPU: the GPU check's every step runs (each in its own process), the JSON
holds every field the GPU run fills, and a step that cannot run is recorded without stopping the others."""
import json
import os
import subprocess
import sys

import pytest

from benchmarks.projection import (PAPER_SCRIPTS, PaperRun, Rates, Task, packed_seconds, packing_gain, paper_flags,
                                   paper_projection, paper_run, projected_seconds)
from helpers import REPO_ROOT

FIELDS = {"device", "quick", "started", "seconds", "failed_steps", "steps", "environment", "tests", "syncs_per_step",
          "syncs_note", "syncs", "graph_identity", "run_20_tasks", "benchmark", "aten_ops_per_step", "packed",
          "paper_projection", "peak_gpu_memory_mb"}
STEPS = ["environment", "run_20_tasks_cpu", "tests", "syncs", "graph_identity", "run_20_tasks_device",
         "benchmark_plain", "benchmark_captured", "packed", "projection", "benchmark_amp", "benchmark_compile"]


def gpu_check(tmp_path, *argv):
    """Run the script on the CPU with ``--quick``: (exit status, printed table, the JSON)."""
    out = tmp_path / "gpu_check.json"
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "gpu_check.sh"), "--device", "cpu", "--quick",
                             "--out", str(out), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CACL_PYTHON": sys.executable})
    return result.returncode, result.stdout, json.loads(out.read_text())


def test_the_rehearsal_runs_every_step_and_fills_every_field(tmp_path):
    status, table, record = gpu_check(tmp_path)
    assert status == 0, table[-3000:]
    assert set(record) == FIELDS and sorted(record["steps"]) == sorted(STEPS) and record["failed_steps"] == []
    assert record["environment"]["torch"] and record["tests"]["failed"] == 0 and record["tests"]["passed"] == 2
    assert record["syncs_per_step"] is None and record["syncs"]["SVDNet"]["steps"] > 0  # the CPU has no syncs
    for variant in ("plain", "amp", "captured", "compile"):
        assert record["benchmark"][variant]["rows"]["floor"]["ratio"] == 1.0
        assert record["benchmark"][variant]["first_step_s"]["svd_step"] > 0
    assert record["benchmark"]["captured"]["cuda_graph"].startswith("rehearsal")  # the CPU cannot capture
    identity = record["graph_identity"]
    assert identity["note"].startswith("rehearsal") and sorted(identity["methods"]) == ["NormalNN", "SVDNet"]
    assert all(method["capturable"] and method["bit_identical"] and method["counts"]["static"] > 0
               for method in identity["methods"].values())
    comparison = record["run_20_tasks"]["comparison"]
    assert comparison["max_abs_diff"] == 0 and comparison["zero_forgetting_device"]  # two CPU runs of one seed
    assert "GPU check on" in table and "svd_step" not in table and "Net_SVD step, CACL loss" in table
    aten = record["aten_ops_per_step"]
    assert 0 < aten["dense"] < aten["svd_task1"] < aten["svd_task20"] and "ATen operations per training step" in table
    packed = record["packed"]["eager"]
    assert list(packed) == ["1", "2"] and packed["1"]["ratio"] == 1.0 and record["packed"]["mps"] is None
    assert all(rate["images_per_s"] > 0 and len(rate["per_job"]) == int(jobs) for jobs, rate in packed.items())
    projection = record["paper_projection"]
    assert projection["shortened_run"]["tasks"] == 2 and projection["shortened_run"]["measured_s"] > 0
    assert sorted(projection["minutes"]) == sorted(PAPER_SCRIPTS) and "shortened cifar100_train.sh" in table


def test_steps_without_time_are_recorded_and_the_check_fails(tmp_path):
    status, table, record = gpu_check(tmp_path, "--budget", "5")  # under the 10 s a step needs at least
    assert status == 1 and {step["status"] for step in record["steps"].values()} == {"skipped"}
    assert sorted(record["failed_steps"]) == sorted(STEPS) and set(record) == FIELDS and "NOT PASSED" in table


# ---------------------------------------------------------------- the paper's scripts projected


RATES = Rates(train_first=100.0, train_last=50.0, evaluate=1000.0, scale84=4.0)
"""Hand-made rates: 0.01 s a training image of task 1, 0.02 s at task 20, 0.001 s an evaluated image; 84×84 images
4 times slower."""


def test_one_job_is_projected_by_the_formula_on_hand_made_rates():
    run = PaperRun(jobs=2, tasks=(Task(10, 5, 32), Task(20, 10, 84)), epochs=3)
    first_task = 3 * 10 * 0.01 + 5 * 0.001  # 3 epochs of 10 images, then task 1's test images evaluated
    per_image = 4 * (0.01 + (0.02 - 0.01) * 1 / 19)  # task 2, at 84x84
    second_task = 3 * 20 * per_image + (5 * 0.001 + 10 * 4 * 0.001)  # both tasks evaluated after it
    assert projected_seconds(run, RATES) == pytest.approx(first_task + second_task)


def test_packed_jobs_run_in_waves_at_the_measured_gain():
    aggregate = {1: 100.0, 2: 150.0, 4: 200.0}
    assert [packing_gain(k, aggregate) for k in (1, 2, 3, 4, 6)] == [1.0, 1.5, 1.75, 2.0, 2.0]
    assert packed_seconds(60.0, 6, 4, aggregate) == pytest.approx(4 * 60 / 2.0 + 2 * 60 / 1.5)  # waves of 4, 2
    assert packed_seconds(60.0, 6, 1, aggregate) == pytest.approx(360.0)


def test_the_paper_scripts_protocols_are_read_from_paper_flags():
    cifar100, mini, five = (paper_run(paper_flags(array)) for array in PAPER_SCRIPTS.values())
    assert (cifar100.jobs, len(cifar100.tasks), cifar100.epochs) == (6, 20, 200)  # 2 weights x 3 repeats
    assert set(cifar100.tasks) == {Task(2500, 500, 32)}
    assert cifar100.jobs * cifar100.epochs * sum(task.train_images for task in cifar100.tasks) == 60_000_000
    assert (mini.jobs, len(mini.tasks), mini.epochs, mini.tasks[0].input_size) == (3, 20, 200, 84)
    assert (five.jobs, len(five.tasks), five.epochs) == (1, 5, 200)
    minutes = paper_projection(RATES, {1: 100.0, 2: 150.0})
    assert minutes["cifar100_train.sh"]["minutes_one_job_at_a_time"] == pytest.approx(
        6 * projected_seconds(cifar100, RATES) / 60, abs=0.05)
    assert minutes["cifar100_train.sh"]["jobs_per_device"] == 2 and minutes["5sequencedataset_train.sh"][
        "jobs_per_device"] == 1
    assert minutes["cifar100_train.sh"]["minutes_packed"] == pytest.approx(
        minutes["cifar100_train.sh"]["minutes_one_job_at_a_time"] / 1.5, abs=0.1)
