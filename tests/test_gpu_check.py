"""``scripts/gpu_check.sh`` rehearsed on the CPU: the GPU check's every step runs (each in its own process), the JSON
holds every field the GPU run fills, and a step that cannot run is recorded without stopping the others."""
import json
import os
import subprocess
import sys

from helpers import REPO_ROOT

FIELDS = {"device", "quick", "started", "seconds", "failed_steps", "steps", "environment", "tests", "syncs_per_step",
          "syncs_note", "syncs", "graph_identity", "run_20_tasks", "benchmark", "peak_gpu_memory_mb"}
STEPS = ["environment", "run_20_tasks_cpu", "tests", "syncs", "graph_identity", "run_20_tasks_device",
         "benchmark_plain", "benchmark_amp", "benchmark_captured", "benchmark_compile"]


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
    assert record["benchmark"]["captured"]["cuda_graph"].startswith("rehearsal")  # the CPU cannot capture
    identity = record["graph_identity"]
    assert identity["note"].startswith("rehearsal") and sorted(identity["methods"]) == ["NormalNN", "SVDNet"]
    assert all(method["capturable"] and method["bit_identical"] and method["counts"]["static"] > 0
               for method in identity["methods"].values())
    comparison = record["run_20_tasks"]["comparison"]
    assert comparison["max_abs_diff"] == 0 and comparison["zero_forgetting_device"]  # two CPU runs of one seed
    assert "GPU check on" in table and "svd_step" not in table and "Net_SVD step, CACL loss" in table


def test_steps_without_time_are_recorded_and_the_check_fails(tmp_path):
    status, table, record = gpu_check(tmp_path, "--budget", "5")  # under the 10 s a step needs at least
    assert status == 1 and {step["status"] for step in record["steps"].values()} == {"skipped"}
    assert sorted(record["failed_steps"]) == sorted(STEPS) and set(record) == FIELDS and "NOT PASSED" in table
