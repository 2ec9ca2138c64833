"""The steps of the GPU check, each run in its own process by ``benchmarks.gpu_check`` (so that a step can be stopped
at its time limit, and a CUDA error, which spoils its process, spoils only its step):
``python -m benchmarks.gpu_steps STEP --device cuda|cpu --out FILE [--quick] [--variant V] [--data DIR]``.

A step writes what it has measured to ``FILE`` (JSON) as it goes, so that a step stopped at its limit still leaves
its numbers; it fails by raising. On CUDA each adds ``peak_gpu_memory_mb`` (``torch.cuda.max_memory_allocated``).

- ``environment``: the device's name, driver and memory, the library versions.
- ``tests``: ``pytest tests/test_cuda_path.py -k "not simulated"``: its tests on CUDA (none on the CPU) and the two
  that check the simulation; counts by device, failures by name.
- ``syncs``: host-device syncs of a few training steps of SVDNet and three baselines on the device, by where they
  come from (``benchmarks.syncs.CudaSyncs``; on the CPU there are none to count: ``null``).
- ``graph_identity``: every method's step captured and replayed against the same step run eagerly, two tasks each
  (``--cuda_graph``; on the CPU a rehearsal, both runs eager).
- ``run_20_tasks``: a 20-task CIFAR-100-shaped run of ``iBatchLearn.py`` (one epoch a task) on ``--variant`` device
  (``device``: the check's, ``cpu``) over ``--data``, written by ``dataloaders.synthetic.write_cifar100``.
- ``benchmark``: ``benchmarks.benchmark``'s rows under ``--variant`` ``plain``, ``amp``, ``compile`` or ``captured``
  (``--cuda_graph``: rows 1-3c; rows 1-2 only with ``--quick``), and with ``plain`` the ATen operations per training
  step.
- ``packed``: the aggregate training throughput of K jobs packed on the device (``benchmarks.packed``), on CUDA also
  under the Multi-Process Service where it starts.
- ``projection``: the rates ``benchmarks.projection`` projects the paper's scripts from, and a shortened run of
  ``cifar100_train.sh`` (all 20 tasks at full data size, 2 epochs each) against its projection.
"""
import argparse
import contextlib
import dataclasses
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from typing import Callable, Dict, List, Tuple

import torch

from benchmarks.syncs import CudaSyncs, Sync
from utils.environment import device_name, git_commit
from utils.files import atomic_json_dump
from utils.runtime import available_cores, subnormals_flushed

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_MODULE = os.path.join("tests", "test_cuda_path.py")
TESTS = "not simulated"
"""The tests run: on a GPU those on CUDA, and the two that check the simulation itself (the test suite runs the
simulated ones; on the CPU, these two are all)."""

Report = Callable[[dict], None]
"""Merges a step's findings so far into its JSON file."""


@dataclasses.dataclass(frozen=True)
class StepOptions:
    device: torch.device
    quick: bool
    variant: str
    data: str

    @property
    def size(self) -> str:
        """Which sizes the step runs: ``quick``, else the device's type (``cuda``, ``cpu``)."""
        return "quick" if self.quick else self.device.type


# ---------------------------------------------------------------- environment


def driver_version() -> str:
    """The NVIDIA driver's version (``nvidia-smi``), else the CUDA version the driver supports (libcuda)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True)
        return smi.stdout.splitlines()[0].strip()
    import ctypes
    version = ctypes.c_int()
    ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version))
    return f"CUDA driver API {version.value // 1000}.{version.value % 1000 // 10} (no nvidia-smi)"


def environment(options: StepOptions, report: Report) -> None:
    record = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
              "cpu_count": os.cpu_count(), "git_commit": git_commit(), "device": options.device.type,
              "device_name": device_name(options.device), "cudnn": None, "driver": None}
    if options.device.type == "cuda":
        properties = torch.cuda.get_device_properties(options.device)
        record.update(cudnn=torch.backends.cudnn.version(), driver=driver_version(),
                      gpu_count=torch.cuda.device_count(), capability=f"{properties.major}.{properties.minor}",
                      memory_gb=round(properties.total_memory / 1e9, 1))
    report(record)


# ---------------------------------------------------------------- the CUDA tests


def junit_counts(path: str) -> dict:
    """Outcomes of a pytest JUnit XML report: counts overall and by device (``[simulated-...]``, ``[cuda-...]``),
    the failed tests with their messages' first lines."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    by_device: Dict[str, Counter] = {}
    failures = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                failures.append({"test": case.get("name"), "message": (child.get("message") or "").splitlines()[:1]})
            elif child.tag == "skipped":
                outcome = "skipped"
        counts[outcome] += 1
        name = case.get("name", "")  # test[simulated-...] or test[cuda-...]; the unparametrized ones simulate
        device = name.split("[", 1)[1].split("-", 1)[0].rstrip("]") if "[" in name else "simulated"
        by_device.setdefault(device, Counter())[outcome] += 1
    return {**counts, "by_device": {device: dict(count) for device, count in by_device.items()},
            "failures": failures}


def tests(options: StepOptions, report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="gpu-check-tests-") as folder:
        xml = os.path.join(folder, "junit.xml")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST_MODULE, "--junitxml", xml,
                   "-k", TESTS]
        finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        print(finished.stdout[-3000:], finished.stderr[-3000:], sep="\n", file=sys.stderr)
        if not os.path.exists(xml):
            raise RuntimeError(f"pytest wrote no report (exit status {finished.returncode})")
        counts = junit_counts(xml)
    report({"tests": counts})
    if finished.returncode != 0:
        raise RuntimeError(f"{counts['failed']} CUDA test(s) failed: "
                           f"{', '.join(failure['test'] for failure in counts['failures'])}")


# ---------------------------------------------------------------- syncs per training step


SYNC_AGENTS = [("SVDNet", "SVDNet", "customnet_SVD", "Net_SVD"), ("default", "NormalNN", "customnet", "Net"),
               ("exp_replay", "Naive_Rehearsal", "customnet", "Net"), ("exp_replay", "GEM", "customnet", "Net")]
"""``(agent_type, agent_name, model_type, model_name)`` of the agents whose steps are counted."""


class NoSyncs:
    """The CPU never waits for a device: nothing to record (``CudaSyncs``' interface)."""

    def __init__(self):
        self.syncs: List[Sync] = []

    def __enter__(self) -> "NoSyncs":
        return self

    def __exit__(self, *exc) -> None:
        pass


def sync_sites(syncs: List[Sync]) -> Dict[str, int]:
    return dict(Counter(sync.site for sync in syncs))


def syncs_of_training(agent_type: str, agent_name: str, model_type: str, model_name: str, options: StepOptions,
                      recorder) -> dict:
    """Two tasks of two epochs of 5 batches on the device (CIFAR-100-shaped images, augmented on the device, batch 64;
    on the CPU 2 batches, with ``--quick`` one epoch): the syncs
    made inside the training steps (``observe``), while making their batches (``TaskLoader.samples``), and between
    steps (the NaN watch's read at each epoch's end, the end of each task), by where they come from."""
    from agents import agent_class
    from dataloaders import TaskLoader
    from benchmarks.benchmark import BATCH_SIZE, CLASSES_PER_TASK, synthetic_task
    from models import build_model

    torch.manual_seed(0)
    model = build_model(model_type, model_name)
    model.add_heads({"1": CLASSES_PER_TASK, "2": CLASSES_PER_TASK})
    cls = agent_class(agent_type, agent_name)
    own = {name: value for name, value in (("memory_size", 64), ("reg_coef", 0.5))
           if name in {field.name for field in dataclasses.fields(cls.Settings)}}
    epochs = 1 if options.quick else 2
    batches = 5 if options.device.type == "cuda" else 2
    agent = cls(model, cls.Settings(schedule=[epochs], print_freq=10 ** 9, device=str(options.device), **own))
    where: Dict[int, str] = {}
    """Which part of training each recorded sync came from, by its position in ``recorder.syncs``."""
    calls: Counter = Counter()

    def marking(part: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def marked(*args, **kwargs):
            calls[part] += 1
            start = len(recorder.syncs)
            result = function(*args, **kwargs)
            where.update((index, part) for index in range(start, len(recorder.syncs)))
            return result
        return marked

    agent.observe = marking("in_steps", agent.observe)
    samples = TaskLoader.samples
    try:
        TaskLoader.samples = marking("making_batches", samples)
        with recorder:
            for task in ("1", "2"):
                loader = TaskLoader(synthetic_task(task, batches * BATCH_SIZE, augment=True,
                                                   seed=int(task)), BATCH_SIZE, shuffle=True, device=options.device,
                                    generator=torch.Generator().manual_seed(int(task)))
                agent.learn_task(task, loader)
    finally:
        TaskLoader.samples = samples
    parts = {part: [sync for index, sync in enumerate(recorder.syncs) if where.get(index, "between_steps") == part]
             for part in ("in_steps", "making_batches", "between_steps")}
    in_step, steps = len(parts["in_steps"]) + len(parts["making_batches"]), calls["in_steps"]
    return {"steps": steps, "epochs": 2 * epochs,
            "per_step": in_step / steps if options.device.type == "cuda" else None,
            **{part: sync_sites(found) for part, found in parts.items()}}


def syncs(options: StepOptions, report: Report) -> None:
    found = {}
    for agent_type, agent_name, model_type, model_name in SYNC_AGENTS[:1] if options.quick else SYNC_AGENTS:
        recorder = CudaSyncs() if options.device.type == "cuda" else NoSyncs()
        found[agent_name] = syncs_of_training(agent_type, agent_name, model_type, model_name, options, recorder)
        report({"syncs": found})


# ---------------------------------------------------------------- a 20-task run


def run_flags(data: str, gpuid: int, quick: bool) -> List[str]:
    """The paper's CIFAR-100 setting, one epoch a task: 20 tasks of 5 classes (2 of 50 with ``quick``)."""
    split = "50" if quick else "5"
    return ["--dataset", "CIFAR100", "--dataroot", data, "--first_split_size", split, "--other_split_size", split,
            "--model_type", "customnet_SVD", "--model_name", "Net_SVD", "--sparse_wt", "0.1", "-e", "0.00003",
            "--grow_network", "--batch_size", "64", "--schedule", "1", "--repeat", "1", "--benchmark",
            "--print_freq", "1000", "--gpuid", str(gpuid), "--exp_name", "gpu_check"]


def driver_run(flags: List[str], experiment: str) -> Tuple[dict, float]:
    """What ``iBatchLearn.py flags`` runs (one repeat), in a temporary working directory: the results record of
    ``experiment`` and the seconds training and evaluating took (its data already loaded)."""
    from experiment.builders import load_data
    from experiment.config import prepared_run, read_config
    from experiment.training import train

    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="gpu-check-run-") as folder:
        os.chdir(folder)  # the run's results/, saves/ and runs/
        try:
            config = read_config(flags)
            with prepared_run(config) as run_device:
                data = load_data(config.data)
                began = time.perf_counter()
                train(config, run_device, data)
                seconds = time.perf_counter() - began
            with open(os.path.join("results", experiment, "output_run0.json")) as file:
                return json.load(file), seconds
        finally:
            os.chdir(previous)


def run_20_tasks(options: StepOptions, report: Report) -> None:
    """What ``iBatchLearn.py`` runs for ``run_flags``, in a temporary working directory."""
    device = options.device if options.variant == "device" else torch.device("cpu")
    gpuid = device.index if device.type == "cuda" else -1
    record, _ = driver_run(run_flags(options.data, gpuid, options.quick), "gpu_check_sparse_wt0.1")
    matrix = record["acc_matrix"]
    report({"run": {"device": str(device), "threads": torch.get_num_threads(), "acc": record["acc"],
                    "avg_acc": record["avg_acc"], "seconds": record["seconds"],
                    "images_per_s": {task: round(record["images_per_s"][task], 1) for task in record["acc_matrix"]},
                    "model_size": record["model_size"],
                    "zero_forgetting": all(row[task] == matrix[task][task] for row in matrix.values() for task in row),
                    "acc_matrix": matrix}})


# ---------------------------------------------------------------- the captured step against the eager one


CPU_STATIC_STEP = "rehearsal: the CPU cannot capture, so both runs are the static-tensor step run eagerly"
IDENTITY_SIZES = {"cuda": (64, 4), "cpu": (4, 2), "quick": (4, 2)}
"""Batch size and full batches a task of the identity check (each task has a last batch of a quarter of one)."""
QUICK_IDENTITY_METHODS = ("NormalNN", "SVDNet")


def trained(cls, model: tuple, device: torch.device, batch_size: int, batches: int, cuda_graph: bool,
            capture: bool) -> dict:
    """``cls`` trained from seed 0 on two tasks of 3 epochs (``--schedule 2 3``: the learning rate drops before the
    third; PackNet retrains one more) of ``batches`` batches and a last one of a quarter, CIFAR-100-shaped images
    augmented on the device; with ``cuda_graph`` (the optimizer capturable on CUDA) the step captured and replayed,
    or without ``capture`` the same static-tensor step run eagerly. Returns the steps' ``counts``
    (``agents.step.TrainingStep``), every step's loss terms and the final model's tensors."""
    from agents.step import TrainingStep
    from benchmarks.benchmark import synthetic_task
    from dataloaders import TaskLoader
    from models import build_model

    own = {"memory_size": batch_size, "reg_coef": 0.5, "post_prune_epochs": 1}
    fields = {field.name for field in dataclasses.fields(cls.Settings)}
    torch.manual_seed(0)
    network = build_model(*model)
    network.add_heads({"1": 5, "2": 5})
    agent = cls(network, cls.Settings(schedule=[2, 3], print_freq=10 ** 9, device=str(device), cuda_graph=cuda_graph,
                                      **{name: value for name, value in own.items() if name in fields}))
    counts: Counter = Counter()
    losses: List[torch.Tensor] = []
    run = TrainingStep.run

    def recorded(step, *batch):
        if not capture:
            step.graphs = None
        terms = run(step, *batch)
        losses.append(torch.stack([value.detach().double() for value in terms.values()]))
        return terms

    TrainingStep.run = recorded
    try:
        for task in ("1", "2"):
            loader = TaskLoader(synthetic_task(task, batches * batch_size + batch_size // 4, augment=True,
                                               seed=int(task)), batch_size, shuffle=True, device=device,
                                generator=torch.Generator().manual_seed(int(task)))
            agent.learn_task(task, loader)
            counts.update(agent.training_step.counts)
    finally:
        TrainingStep.run = run
    return {"counts": dict(counts), "losses": losses, "weights": list(agent.model.state_dict().values())}


def differences(first: dict, second: dict) -> dict:
    """The largest ``|a - b|`` of two ``trained`` runs' weights and of their losses, and whether both are 0 bit for
    bit (the same number of steps, every tensor equal)."""
    def largest(a: List[torch.Tensor], b: List[torch.Tensor]) -> float:
        return max((float((x.double() - y.double()).abs().max()) for x, y in zip(a, b) if x.numel()), default=0.0)

    same = len(first["losses"]) == len(second["losses"]) and all(
        torch.equal(x, y) for key in ("weights", "losses") for x, y in zip(first[key], second[key]))
    return {"max_abs_diff_weights": largest(first["weights"], second["weights"]),
            "max_abs_diff_losses": largest(first["losses"], second["losses"]), "bit_identical": same}


def graph_identity(options: StepOptions, report: Report) -> None:
    """Every method's captured step against its eager one (``trained`` with and without ``capture``), with
    ``--benchmark``'s cuDNN settings (the same kernels both times), and the eager one against today's step (without
    ``--cuda_graph``: the optimizer's default form). Per method: ``capturable`` (and the ``obstacle`` when not: such a
    method runs eagerly and is not trained here), ``counts`` of the captured run's steps, ``max_abs_diff_weights``
    (every tensor of the model's state), ``max_abs_diff_losses`` (every step's loss terms) and ``bit_identical``;
    ``capturable_form_vs_today``: the same three numbers, the eager step with the capturable optimizer against
    today's. The dense ``Net`` (``Net_SVD`` for CACL); on the CPU a rehearsal (``CPU_STATIC_STEP``), with ``--quick``
    of NormalNN and SVDNet only. Fails when a captured step is not bit-identical to its eager one."""
    from agents import agent_types
    from agents.step import capture_obstacle
    from utils.runtime import configure_cudnn

    configure_cudnn(reproducible=True)
    size = "quick" if options.quick else options.device.type
    batch_size, batches = IDENTITY_SIZES[size]
    found = {"device": str(options.device), "batch_size": batch_size, "batches_a_task": batches + 1,
             "note": ("the step captured and replayed against the same step run eagerly, both with the capturable "
                      "optimizer" if options.device.type == "cuda" else CPU_STATIC_STEP), "methods": {}}
    for methods in agent_types().values():
        for name, cls in methods.items():
            if options.quick and name not in QUICK_IDENTITY_METHODS:
                continue
            obstacle = capture_obstacle(cls, "Adam")
            record = {"capturable": not obstacle, "obstacle": obstacle or None, "counts": None,
                      "max_abs_diff_weights": None, "max_abs_diff_losses": None, "bit_identical": None,
                      "capturable_form_vs_today": None}
            if not obstacle:
                model = ("customnet_SVD", "Net_SVD") if name == "SVDNet" else ("customnet", "Net")
                runs = [trained(cls, model, options.device, batch_size, batches, cuda_graph, capture)
                        for cuda_graph, capture in ((True, True), (True, False), (False, False))]
                record.update(counts=runs[0]["counts"], **differences(runs[0], runs[1]),
                              capturable_form_vs_today=differences(runs[1], runs[2]))
            found["methods"][name] = record
            report({"graph_identity": found})
    different = [name for name, record in found["methods"].items() if record["bit_identical"] is False]
    if different:
        raise RuntimeError(f"the captured step differs from the eager one for {', '.join(different)}")


# ---------------------------------------------------------------- the benchmark's rows


CAPTURED_ROWS = 4
"""The ``captured`` variant measures the benchmark's first rows only, those of the training step: 1, 2 (the
captured step, dense and ``Net_SVD``), 3, 3b and 3c (tasks 1 and 20, a task after 4 trained ones); evaluation is
not captured."""
COMPILED_ROWS = 3
"""The ``compile`` variant measures rows 1, 2, 3 and 3b: evaluation is not compiled, and row 3c would compile the
step of each of its 5 tasks (new ranks, new shapes) within the step's time limit."""


def gpu_sizes(rounds: int):
    """The benchmark's sizes on a GPU: 20 timed steps, epochs of 20 batches, 5 batches a task evaluated, row 3c's
    tasks of 20 batches, best of ``rounds``."""
    from benchmarks import benchmark as rows

    return rows.Sizes(warmup_steps=3, steps=20, rounds=rounds, train_images=20 * rows.BATCH_SIZE,
                      test_images=5 * rows.BATCH_SIZE, trained_images=20 * rows.BATCH_SIZE)


def benchmark(options: StepOptions, report: Report) -> None:
    """``benchmarks.benchmark``'s rows 1-4h, 3c included (row 5, a whole run's peak memory, is the 20-task run's
    step; row 6's per-task rates of a real run are that run's ``images_per_s``), each written as soon as measured,
    and with ``plain`` its ATen operations per training step (``aten_ops_per_step``); the ``captured`` variant
    (``--cuda_graph``) rows 1-3c only (``CAPTURED_ROWS``), the ``compile`` variant rows 1-3b (``COMPILED_ROWS``). On
    a GPU ``gpu_sizes``, best of 2 rounds (1 compiled); on the CPU the benchmark's ``--quick`` sizes,
    ``torch.compile`` without code generation (backend ``eager``) and the captured step run eagerly from its static
    tensors. As the benchmark, with subnormal floats flushed to 0 on the CPU."""
    from benchmarks import benchmark as rows

    speed = rows.Speed(amp=options.variant == "amp", compile=options.variant == "compile",
                       cuda_graph=options.variant == "captured")
    if options.device.type == "cuda":
        sizes = gpu_sizes(rounds=1 if speed.compile else 2)
    else:
        sizes = rows.QUICK
        if speed.compile:
            torch.compile = functools.partial(torch.compile, backend="eager")
    device = options.device
    found = {"variant": options.variant, "compile_backend": "eager" if speed.compile and device.type == "cpu" else
             "inductor" if speed.compile else None,
             "cuda_graph": (None if not speed.cuda_graph else "captured and replayed" if device.type == "cuda" else
                            CPU_STATIC_STEP), "sizes": dataclasses.asdict(sizes), "rows": {}}
    with subnormals_flushed(device), rows.fashion_mnist_root(sizes) as (dataroot, trained_data):
        found["trained_data"] = trained_data
        measure = [lambda: rows.step_rates(device, speed, sizes),
                   lambda: {"train_path": rows.train_path_rate(device, speed, sizes, tasks_before=0)},
                   lambda: {"train_path_task20": rows.train_path_rate(device, speed, sizes,
                                                                      tasks_before=rows.TASKS - 1)},
                   lambda: {"train_path_trained": rows.trained_network_rate(device, speed, sizes, dataroot)},
                   lambda: {"eval_path": rows.eval_path_rate(device, speed, sizes)},
                   lambda: rows.evaluation_rates(device, speed, sizes),
                   lambda: rows.layer_form_rates(device, speed, sizes),
                   lambda: rows.without_label_rates(device, speed, sizes)]
        rows_measured = (1 if options.quick else CAPTURED_ROWS if speed.cuda_graph else COMPILED_ROWS if speed.compile
                         else len(measure))
        for row in measure[:rows_measured]:
            found["rows"].update(row())
            report({"benchmark": found})
        if options.variant == "plain":
            report({"aten_ops_per_step": rows.aten_operations_per_step(device)})


# ---------------------------------------------------------------- packed jobs


PACKED_JOBS = {"cuda": (1, 2, 4, 6), "cpu": (1, 2), "quick": (1, 2)}
"""The K measured: on a GPU the issue's, on the CPU a rehearsal."""
PACKED_SECONDS = {"cuda": 5.0, "cpu": 3.0, "quick": 0.5}
"""Timed seconds of each K."""


def packed(options: StepOptions, report: Report) -> None:
    """``benchmarks.packed``: the aggregate training throughput of K jobs packed on the device (``eager``), and on
    CUDA the same under the Multi-Process Service (``mps``; ``{"error": why}`` where it does not start or its jobs
    fail)."""
    from benchmarks.packed import mps_daemon, packed_rates

    jobs, seconds, cores = PACKED_JOBS[options.size], PACKED_SECONDS[options.size], available_cores()
    found = {"seconds": seconds, "cores": cores, "eager": None, "mps": None}
    found["eager"] = packed_rates(str(options.device), jobs, seconds, cores, warmup_steps=1 if options.quick else 3)
    report({"packed": found})
    if options.device.type == "cuda":
        with mps_daemon() as refused:
            try:
                found["mps"] = {"error": refused} if refused else packed_rates(str(options.device), jobs, seconds,
                                                                               cores)
            except RuntimeError as error:  # the clients failed under MPS: recorded, the eager figures stand
                found["mps"] = {"error": str(error)[-2000:]}
        report({"packed": found})


# ---------------------------------------------------------------- the paper's scripts projected


SHORTENED_RUN = {"cuda": ((500, 100), 2, "5"), "cpu": ((20, 10), 1, "5"), "quick": ((4, 2), 1, "50")}
"""``cifar100_train.sh`` shortened: (training and test images a class, epochs a task, classes a task); on a GPU its
full data (2,500 training images a task), 20 tasks."""


def projection(options: StepOptions, report: Report) -> None:
    """The rates of ``benchmarks.projection.Rates`` measured here (``benchmarks.benchmark``'s rows 3, 3b and 4, and
    row 3 at 84×84; the GPU check's benchmark sizes, on the CPU one batch an epoch and a task), then
    ``cifar100_train.sh`` run shortened (``SHORTENED_RUN``, sparsity weight 0.1, one repeat) on synthetic CIFAR-100
    of its size, its seconds against ``projected_seconds`` of its protocol."""
    from benchmarks import benchmark as rows
    from benchmarks.projection import Rates, paper_flags, paper_run, projected_seconds
    from dataloaders.synthetic import write_cifar100

    device, speed = options.device, rows.Speed()
    sizes = gpu_sizes(rounds=2) if device.type == "cuda" else dataclasses.replace(
        rows.QUICK, train_images=rows.BATCH_SIZE, test_images=rows.BATCH_SIZE)
    with subnormals_flushed(device):
        first = rows.train_path_rate(device, speed, sizes, tasks_before=0)
        rates = Rates(train_first=first,
                      train_last=rows.train_path_rate(device, speed, sizes, tasks_before=rows.TASKS - 1),
                      evaluate=rows.eval_path_rate(device, speed, sizes),
                      scale84=first / rows.train_path_rate(device, speed, sizes, tasks_before=0, image_size=84))
    found = {"rates": {key: round(value, 3) for key, value in dataclasses.asdict(rates).items()}}
    report({"paper_projection": found})
    per_class, epochs, split = SHORTENED_RUN[options.size]
    flags = [*paper_flags("CIFAR100_FLAGS"), "--repeat", "1", "--sparse_wt", "0.1", "--schedule", str(epochs),
             "--first_split_size", split, "--other_split_size", split, "--print_freq", str(10 ** 9),
             "--gpuid", str(device.index or 0) if device.type == "cuda" else "-1", "--exp_name", "shortened"]
    with tempfile.TemporaryDirectory(prefix="gpu-check-shortened-") as data:
        write_cifar100(data, *per_class)
        _, seconds = driver_run([*flags, "--dataroot", data], "shortened_sparse_wt0.1")
    run = paper_run(flags, per_class)
    projected = projected_seconds(run, rates)
    found["shortened_run"] = {"tasks": len(run.tasks), "epochs": run.epochs,
                              "training_images_per_task": run.tasks[0].train_images,
                              "measured_s": round(seconds, 1), "projected_s": round(projected, 1),
                              "measured_to_projected": round(seconds / projected, 3)}
    report({"paper_projection": found})


# ---------------------------------------------------------------- one step, in this process


STEPS = {"environment": environment, "tests": tests, "syncs": syncs, "graph_identity": graph_identity,
         "run_20_tasks": run_20_tasks, "benchmark": benchmark, "packed": packed, "projection": projection}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="one step of the GPU check (benchmarks.gpu_check runs them)")
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out", required=True, help="the step's JSON")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--variant", default="")
    parser.add_argument("--data", default="")
    args = parser.parse_args(argv)
    options = StepOptions(torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu"), args.quick,
                          args.variant, args.data)
    found: dict = {}

    def report(update: dict) -> None:
        found.update(update)
        if options.device.type == "cuda" and torch.cuda.is_initialized():
            found["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(options.device) / 2 ** 20, 1)
        atomic_json_dump(found, args.out)

    STEPS[args.step](options, report)
    report({})
    return 0


if __name__ == "__main__":
    sys.exit(main())
