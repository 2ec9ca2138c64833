"""``scripts/gpu_check.sh`` (``python -m benchmarks.gpu_check``): everything that needs a real GPU, in one command
that writes ``results/gpu_check.json`` (``--out``) and prints a table.

Steps, in this order (``benchmarks.gpu_steps`` says what each does):

1. ``environment``: the device's name, driver and memory, torch, CUDA and cuDNN versions;
2. ``tests``: ``tests/test_cuda_path.py`` with real CUDA tensors (the simulated ones run in the test suite), CACL's
   bit-exact zero forgetting under ``--benchmark``'s cuDNN settings among them;
3. ``syncs``: host-device syncs per training step of SVDNet, NormalNN, Naive_Rehearsal and GEM, by source;
   ``graph_identity``: every method's training step captured as a CUDA graph and replayed (``--cuda_graph``) against
   the same step run eagerly, two tasks each: whether it can be captured, the largest differences of the weights
   and of the losses, bit-identical or not;
4. ``run_20_tasks_device`` and ``run_20_tasks_cpu`` (started after step 1, on half the CPU cores, beside steps 2-4):
   a 20-task CIFAR-100-shaped run (synthetic images in the official format, 250 train and 50 test a class, one epoch
   a task) on the device and on the CPU, their per-task accuracies compared, zero forgetting checked;
5. ``benchmark_plain``: ``scripts/benchmark.sh``'s rows 1-4h (3c, a network trained on 4 real tasks, included;
   4d-4e, a pruned task evaluated in either layer form; 4f-4h, evaluation with ``--task_agnostic``), as images/s and as ratios to the dense floor on this device,
   and the ATen operations of one training step (``aten_ops_per_step``);
6. ``benchmark_captured``: rows 1-3c with ``--cuda_graph`` (the captured step, dense and ``Net_SVD``, tasks 1 and
   20, a task after 4 trained ones);
7. ``packed``: the aggregate training throughput of K jobs packed on the device (K = 1, 2, 4, 6; on the CPU 1, 2),
   and under CUDA's Multi-Process Service where it starts;
8. ``projection``: the rates the paper's scripts are projected from and a shortened ``cifar100_train.sh`` (20 tasks
   of full size, 2 epochs each) against its projection; after every step, ``paper_projection``'s minutes per script
   (``benchmarks.projection``) from these rates and the packed throughput;
9. ``benchmark_amp``, ``benchmark_compile``: the benchmark's rows with ``--amp`` and with ``--compile``.

Each step runs in its own process with a time limit, cut to what is left of the whole check's ``--budget`` (450 s on
a GPU); the JSON is written after each step, so a stopped check still leaves what it measured. A step that fails, or
is stopped at its limit, is recorded with its message (and its log in ``<out>_logs/``) and the others still run;
the exit status is 1 when a step did not pass. Peak GPU memory is recorded per step.

``--device cpu`` rehearses the same steps on the CPU with smaller sizes (the 20-task run with 20 train and 10 test
images a class; the benchmark's ``--quick`` sizes; ``torch.compile`` without code generation; no capture: the
captured step runs eagerly from its static tensors, and the JSON says so) and limits only against a hung step (3
times the GPU's, a 900 s budget); ``--quick`` makes every step as small as it gets (2 tasks, one agent's syncs, two
methods' graph identity, benchmark rows 1-2), for the test suite.
"""
import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Set

from benchmarks.projection import Rates, paper_projection
from dataloaders.synthetic import write_cifar100
from utils.files import atomic_json_dump

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_STEP_SECONDS = 10
"""A step given less time than this is skipped."""
BUDGETS = {"cuda": 450, "cpu": 900, "quick": 900}
"""Default ``--budget``: seconds for the whole check (the GPU's is 7.5 min of an 8-minute cap; on the CPU, where no
device time is counted, a guard against a hung step on a loaded machine)."""
CPU_SLACK = 3
"""On the CPU each step may take this many times its GPU limit (the limits only guard against a hung step)."""
DATA_SIZES = {"cuda": (250, 50), "cpu": (20, 10), "quick": (4, 2)}
"""Train and test images a class of the 20-task run's synthetic CIFAR-100."""
ROWS = [("1", "floor", "dense Net step (ready tensors)", "floor"),
        ("2", "svd_step", "Net_SVD step, CACL loss", "floor"),
        ("3", "train_path", "task 1 epoch (learn_task + TaskLoader)", "floor"),
        ("3b", "train_path_task20", "task 20 epoch, grown network", "floor"),
        ("3c", "train_path_trained", "task 5 epoch, 4 tasks trained (F-MNIST)", "floor"),
        ("4", "eval_path", "evaluate 20 tasks", "floor"),
        ("4b", "eval_pruned", "evaluate a pruned task", "eval_floor"),
        ("4c", "eval_floor", "evaluate a task, dense Net", "eval_floor"),
        ("4d", "eval_two_convolutions", "4b, two thin convolutions a layer", "eval_floor"),
        ("4e", "eval_composed", "4b, one composed kernel a layer", "eval_floor"),
        ("4f", "eval_path_agnostic", "evaluate 20 tasks, --task_agnostic", "eval_path"),
        ("4g", "eval_shared", "evaluate 20 tasks, dense Net, 20 heads", "floor"),
        ("4h", "eval_shared_agnostic", "the same, --task_agnostic", "eval_shared")]
"""``benchmarks.benchmark.ROWS``: (row, key, what, the row it is a ratio to)."""


@dataclasses.dataclass(frozen=True)
class Step:
    key: str
    """Its name in the JSON's ``steps``."""
    step: str
    """The ``benchmarks.gpu_steps`` step it runs."""
    limit: float
    """Seconds it may take at most."""
    variant: str = ""
    threads: Optional[int] = None
    """``OMP_NUM_THREADS`` of its process (None: the default)."""


def plan() -> List[Step]:
    """The steps in order; the CPU's 20-task run goes beside the tests, the syncs and the device's run
    (``BACKGROUND``), on half the cores."""
    threads = max(1, (os.cpu_count() or 2) // 2)
    return [Step("environment", "environment", 60), Step("run_20_tasks_cpu", "run_20_tasks", 200, "cpu", threads),
            Step("tests", "tests", 180), Step("syncs", "syncs", 90), Step("graph_identity", "graph_identity", 150),
            Step("run_20_tasks_device", "run_20_tasks", 120, "device"),
            Step("benchmark_plain", "benchmark", 90, "plain"), Step("benchmark_captured", "benchmark", 90, "captured"),
            Step("packed", "packed", 150), Step("projection", "projection", 120),
            Step("benchmark_amp", "benchmark", 90, "amp"),
            Step("benchmark_compile", "benchmark", 200, "compile")]


BACKGROUND = "run_20_tasks_cpu"
"""Started right after ``environment``, beside the next steps, and waited for before the benchmarks."""


def get_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cuda (default): the GPU check; cpu: its rehearsal on the CPU")
    parser.add_argument("--out", default=os.path.join("results", "gpu_check.json"), help="the JSON written")
    parser.add_argument("--quick", action="store_true", help="the smallest sizes (the test suite's rehearsal)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole check (default: 450 on cuda, 900 on cpu)")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- running the steps


class Runner:
    """Runs the steps, each in its own process under its limit and the budget, and keeps ``results`` written."""

    def __init__(self, args: argparse.Namespace, data: str):
        self.args, self.data = args, data
        self.started = time.monotonic()
        size = "quick" if args.quick else args.device
        self.deadline = self.started + (args.budget if args.budget is not None else BUDGETS[size])
        self.logs = os.path.abspath(f"{os.path.splitext(args.out)[0]}_logs")
        os.makedirs(self.logs, exist_ok=True)
        self.results = empty_results(args)
        self.running: Set[subprocess.Popen] = set()
        """The steps' processes still running (stopped with the check if it is stopped)."""

    def say(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - self.started:5.0f}s] {message}", flush=True)

    def start(self, step: Step) -> Optional[dict]:
        """Start ``step``'s process; None (and the step recorded as skipped) when no time is left."""
        slack = 1 if self.args.device == "cuda" else CPU_SLACK
        limit = min(step.limit * slack, self.deadline - time.monotonic())
        if limit < MIN_STEP_SECONDS:
            self.record(step.key, "skipped", 0.0, "no time left in the budget")
            return None
        out = os.path.join(self.logs, f"{step.key}.json")
        if os.path.exists(out):
            os.remove(out)
        command = [sys.executable, "-m", "benchmarks.gpu_steps", step.step, "--device", self.args.device, "--out", out,
                   "--variant", step.variant, "--data", self.data, *(["--quick"] if self.args.quick else [])]
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT,
                                                                                 os.environ.get("PYTHONPATH")])))
        if step.threads is not None:
            environment["OMP_NUM_THREADS"] = str(step.threads)
        log = open(os.path.join(self.logs, f"{step.key}.log"), "w")
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                   start_new_session=True)
        self.running.add(process)
        self.say(f"{step.key}: started (limit {limit:.0f} s)")
        return {"step": step, "process": process, "log": log, "out": out, "began": time.monotonic(),
                "ends": time.monotonic() + limit}

    def finish(self, running: Optional[dict]) -> Optional[dict]:
        """Wait for a started step (at most to its limit); record its outcome; return what it wrote."""
        if running is None:
            return None
        step, process = running["step"], running["process"]
        try:
            process.wait(timeout=max(0.0, running["ends"] - time.monotonic()))
            status = "passed" if process.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            stop(process)
            status = "timed out"
        self.running.discard(process)
        running["log"].close()
        seconds = time.monotonic() - running["began"]
        found = None
        if os.path.exists(running["out"]):
            with open(running["out"]) as file:
                found = json.load(file)
        error = None if status == "passed" else (f"stopped at its limit after {seconds:.0f} s" if status == "timed out"
                                                 else last_lines(os.path.join(self.logs, f"{step.key}.log")))
        self.record(step.key, status, seconds, error)
        if found is not None:
            merge(self.results, step, found, self.args.device)
            atomic_json_dump(self.results, self.args.out)
        return found

    def record(self, key: str, status: str, seconds: float, error: Optional[str]) -> None:
        self.results["steps"][key] = {"status": status, "seconds": round(seconds, 1), "error": error,
                                      "log": os.path.join(self.logs, f"{key}.log")}
        if status != "passed":
            self.results["failed_steps"].append(key)
        self.results["seconds"] = round(time.monotonic() - self.started, 1)
        atomic_json_dump(self.results, self.args.out)
        self.say(f"{key}: {status}" + (f" in {seconds:.1f} s" if status != "skipped" else "")
                 + (f": {error.splitlines()[-1]}" if error else ""))

    def run(self) -> dict:
        steps = {step.key: step for step in plan()}
        order = list(steps)
        try:
            self.finish(self.start(steps[order[0]]))
            background = self.start(steps[BACKGROUND])
            for key in order[1:]:
                if key == "benchmark_plain":  # the benchmarks run alone
                    self.finish(background)
                if key != BACKGROUND:
                    self.finish(self.start(steps[key]))
        finally:  # stopped (Ctrl-C, SIGTERM): no step outlives the check
            for process in self.running:
                stop(process)
        compare_runs(self.results)
        project(self.results)
        self.results["seconds"] = round(time.monotonic() - self.started, 1)
        atomic_json_dump(self.results, self.args.out)
        return self.results


def stop(process: subprocess.Popen) -> None:
    """Kill a step's process and what it started (pytest, compile workers: its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def last_lines(path: str, count: int = 15) -> str:
    with open(path, errors="replace") as file:
        lines = [line.rstrip() for line in file if line.strip()]
    return "\n".join(lines[-count:]) or "no output"


# ---------------------------------------------------------------- the JSON


def empty_results(args: argparse.Namespace) -> dict:
    """Every field of the JSON, before any step filled it."""
    cuda = args.device == "cuda"
    return {"device": args.device, "quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": 0.0, "failed_steps": [], "steps": {}, "environment": None, "tests": None,
            "syncs_per_step": None,
            "syncs_note": ("host-device syncs counted by torch.cuda.set_sync_debug_mode('warn') inside each "
                           "training step (observe) and its batch making; between_steps: the NaN watch's read per "
                           "epoch and the end of each task" if cuda else
                           "null on the CPU: syncs are waits for a GPU (the test suite counts them on a simulated "
                           "device, tests/test_cuda_path.py)"),
            "syncs": None, "graph_identity": None,
            "run_20_tasks": {"device": None, "cpu": None, "comparison": None},
            "benchmark": {"plain": None, "amp": None, "captured": None, "compile": None}, "aten_ops_per_step": None,
            "packed": None, "paper_projection": None,
            "peak_gpu_memory_mb": {} if cuda else None}


def merge(results: dict, step: Step, found: dict, device: str) -> None:
    """A step's findings into ``results``."""
    if device == "cuda" and "peak_gpu_memory_mb" in found:
        results["peak_gpu_memory_mb"][step.key] = found["peak_gpu_memory_mb"]
    if step.step == "environment":
        results["environment"] = {key: value for key, value in found.items() if key != "peak_gpu_memory_mb"}
    elif step.step == "tests":
        results["tests"] = found.get("tests")
    elif step.step == "syncs":
        results["syncs"] = found.get("syncs")
        if device == "cuda" and found.get("syncs"):
            results["syncs_per_step"] = {agent: counts["per_step"] for agent, counts in found["syncs"].items()}
    elif step.step == "graph_identity":
        results["graph_identity"] = found.get("graph_identity")
    elif step.step == "run_20_tasks":
        results["run_20_tasks"][step.variant] = found.get("run")
    elif step.step == "packed":
        results["packed"] = found.get("packed")
    elif step.step == "projection":
        results["paper_projection"] = found.get("paper_projection")
    elif step.step == "benchmark" and "benchmark" in found:
        if "aten_ops_per_step" in found:
            results["aten_ops_per_step"] = found["aten_ops_per_step"]
        measured = found["benchmark"]
        rows = measured["rows"]
        measured["first_step_s"] = rows.get("first_step_s")
        measured["rows"] = {key: {"images_per_s": round(rows[key], 1),
                                  "ratio": round(rows[key] / rows[reference], 3) if reference in rows else None}
                            for _, key, _, reference in ROWS if key in rows}
        results["benchmark"][step.variant] = measured


def compare_runs(results: dict) -> None:
    """The 20-task runs' per-task accuracies, device against CPU."""
    device, cpu = results["run_20_tasks"]["device"], results["run_20_tasks"]["cpu"]
    if not device or not cpu:
        return
    tasks = [task for task in device["acc"] if task in cpu["acc"]]
    differences = [device["acc"][task] - cpu["acc"][task] for task in tasks]
    results["run_20_tasks"]["comparison"] = {
        "tasks": len(tasks), "max_abs_diff": round(max(abs(d) for d in differences), 2),
        "mean_abs_diff": round(sum(abs(d) for d in differences) / len(tasks), 2),
        "avg_acc_device": round(device["avg_acc"], 2), "avg_acc_cpu": round(cpu["avg_acc"], 2),
        "avg_acc_diff": round(device["avg_acc"] - cpu["avg_acc"], 2),
        "zero_forgetting_device": device["zero_forgetting"], "zero_forgetting_cpu": cpu["zero_forgetting"]}


def project(results: dict) -> None:
    """``paper_projection``'s minutes per paper script (``benchmarks.projection.paper_projection``) from the
    projection step's rates and the packed jobs' aggregate throughput (one job at a time where it was not
    measured)."""
    projection = results["paper_projection"]
    if not projection or "rates" not in projection:
        return
    packed = (results["packed"] or {}).get("eager") or {"1": {"images_per_s": 1.0}}
    aggregate = {int(jobs): rate["images_per_s"] for jobs, rate in packed.items()}
    projection["minutes"] = paper_projection(Rates(**projection["rates"]), aggregate)


# ---------------------------------------------------------------- the table


def format_table(results: dict) -> str:
    environment = results["environment"] or {}
    lines = [f"GPU check on {environment.get('device_name', results['device'])} (driver {environment.get('driver')}, "
             f"torch {environment.get('torch')}, CUDA {environment.get('cuda')}, cuDNN {environment.get('cudnn')})"
             f"{' [quick]' if results['quick'] else ''}: {results['seconds']:.0f} s",
             f"{'step':<22} {'status':<10} {'seconds':>8}"]
    for key, step in results["steps"].items():
        lines.append(f"{key:<22} {step['status']:<10} {step['seconds']:8.1f}")
    tests = results["tests"]
    if tests:
        by_device = ", ".join(f"{device} {counts}" for device, counts in tests["by_device"].items())
        lines.append(f"CUDA tests: {tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped "
                     f"({by_device})")
        lines += [f"  failed: {failure['test']}: {' '.join(failure['message'])}" for failure in tests["failures"]]
    if results["syncs"]:
        lines.append("syncs per training step" + ("" if results["syncs_per_step"] else " (not on the CPU)") + ":")
        for agent, counts in results["syncs"].items():
            per_step = "-" if counts["per_step"] is None else f"{counts['per_step']:.2f}"
            sources = {**counts["in_steps"], **counts["making_batches"]}
            lines.append(f"  {agent:<16} {per_step:>6} over {counts['steps']} steps; in steps: {sources or 'none'}; "
                         f"between steps: {counts['between_steps'] or 'none'}")
    identity = results["graph_identity"]
    if identity:
        lines.append(f"captured step against the eager one ({identity['note']}):")
        for method, record in identity["methods"].items():
            if not record["capturable"]:
                lines.append(f"  {method:<20} not captured: {record['obstacle']}")
            elif record["bit_identical"] is not None:
                today = record["capturable_form_vs_today"]
                lines.append(f"  {method:<20} {'bit-identical' if record['bit_identical'] else 'DIFFERENT'}: max |diff| "
                             f"weights {record['max_abs_diff_weights']:.3g}, losses "
                             f"{record['max_abs_diff_losses']:.3g}; the capturable optimizer against today's: "
                             f"weights {today['max_abs_diff_weights']:.3g}; steps {record['counts']}")
    benchmarks = {variant: found for variant, found in results["benchmark"].items() if found}
    if benchmarks:
        lines.append("benchmark, images/s (ratio to row 1; rows 4b-4e to 4c, 4f to 4, 4h to 4g):")
        lines.append(f"  {'row':>3}  {'what':<40}" + "".join(f"{variant:>20}" for variant in benchmarks))
        for row, key, what, _ in ROWS:
            cells = []
            for found in benchmarks.values():
                cell = found["rows"].get(key)
                cells.append(f"{cell['images_per_s']:10.1f} ({cell['ratio']:5.2f})" if cell else "-")
            lines.append(f"  {row:>3}  {what:<40}" + "".join(f"{cell:>20}" for cell in cells))
    if results["aten_ops_per_step"]:
        lines.append("ATen operations per training step: " + ", ".join(
            f"{name} {count}" for name, count in results["aten_ops_per_step"].items()))
    lines += packed_lines(results["packed"]) + projection_lines(results["paper_projection"])
    runs = results["run_20_tasks"]
    for variant in ("device", "cpu"):
        if runs[variant]:
            run = runs[variant]
            lines.append(f"{len(run['acc'])}-task run, {variant} ({run['device']}, {run['threads']} threads): average "
                         f"{run['avg_acc']:.2f}%, {run['seconds']:.1f} s of training, zero forgetting: "
                         f"{'yes' if run['zero_forgetting'] else 'NO'}")
            rates = list(run["images_per_s"].values())
            if rates:
                lines.append(f"  images/s per task: first {rates[0]:.0f}, later {min(rates[1:], default=rates[0]):.0f}"
                             f" to {max(rates[1:], default=rates[0]):.0f}")
    if runs["comparison"]:
        comparison = runs["comparison"]
        lines.append(f"  per-task accuracy, device - CPU: max |diff| {comparison['max_abs_diff']:.2f} points, mean "
                     f"|diff| {comparison['mean_abs_diff']:.2f}, averages differ by {comparison['avg_acc_diff']:.2f}")
    if results["peak_gpu_memory_mb"]:
        peak = max(results["peak_gpu_memory_mb"].items(), key=lambda item: item[1])
        lines.append(f"peak GPU memory: {peak[1]:.0f} MB ({peak[0]})")
    if results["failed_steps"]:
        lines.append(f"NOT PASSED: {', '.join(results['failed_steps'])} (messages and logs in the JSON)")
    return "\n".join(lines)


def packed_lines(packed: Optional[dict]) -> List[str]:
    lines = []
    for mode in ("eager", "mps"):
        found = (packed or {}).get(mode)
        if found and "error" in found:
            lines.append(f"packed jobs, {mode}: not measured: {found['error'].splitlines()[-1]}")
        elif found:
            lines.append(f"packed jobs, {mode}, aggregate images/s (ratio to one job): " + ", ".join(
                f"K={jobs} {rate['images_per_s']:.0f} ({rate['ratio']:.2f})" for jobs, rate in found.items()))
    return lines


def projection_lines(projection: Optional[dict]) -> List[str]:
    lines = []
    if projection and projection.get("shortened_run"):
        run = projection["shortened_run"]
        lines.append(f"shortened cifar100_train.sh ({run['tasks']} tasks x {run['epochs']} epochs of "
                     f"{run['training_images_per_task']} images): {run['measured_s']:.1f} s measured, "
                     f"{run['projected_s']:.1f} s projected ({run['measured_to_projected']:.2f})")
    if projection and projection.get("minutes"):
        lines.append("the paper's scripts projected on this device (from the rates measured here):")
    for script, minutes in ((projection or {}).get("minutes") or {}).items():
        lines.append(f"  {script}: {minutes['minutes_one_job_at_a_time']:.0f} min one job at a time, "
                     f"{minutes['minutes_packed']:.0f} min with {minutes['jobs_per_device']} a time "
                     f"({minutes['jobs']} jobs x {minutes['tasks']} tasks x {minutes['epochs']} epochs)")
    return lines


def main(argv=None) -> int:
    args = get_args(argv)
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(143))  # through run's clean-up
    size = "quick" if args.quick else args.device
    with tempfile.TemporaryDirectory(prefix="gpu-check-data-") as data:
        write_cifar100(data, *DATA_SIZES[size])
        runner = Runner(args, data)
        runner.say(f"GPU check on {args.device}{' (quick)' if args.quick else ''}: writing {args.out}")
        results = runner.run()
    print(format_table(results))
    return 1 if results["failed_steps"] else 0


if __name__ == "__main__":
    sys.exit(main())
