"""How long the paper's scripts take on a device, projected from its measured rates (the GPU check's
``paper_projection``).

A paper script's protocol (``scripts/paper_flags.sh``, read through the driver's door): its jobs (one per swept
weight and repeat), each a sequence of tasks (training and test images, input size) trained for the schedule's last
epoch each, every task seen so far evaluated after each. ``projected_seconds`` turns measured rates into the time of
one job; ``packed_seconds`` into the time of all of them, K at a time on one device.
"""
import os
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from dataloaders import DATASET_CLASSES, DATASET_INPUTS
from experiment.config import read_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_SCRIPTS = {"cifar100_train.sh": "CIFAR100_FLAGS", "miniimagenet_train.sh": "MINIIMAGENET_FLAGS",
                 "5sequencedataset_train.sh": "FIVE_DATASETS_FLAGS"}
"""Each paper script and the array of ``scripts/paper_flags.sh`` it runs."""
IMAGES_PER_CLASS = {"CIFAR100": (500, 100), "miniImageNet": (500, 100)}
"""Training and test images a class of the class-split benchmarks."""
FIVE_DATASETS = [("CIFAR10", 50000, 10000, 32), ("notMNIST", 17000, 1900, 32), ("MNIST", 60000, 10000, 32),
                 ("SVHN", 73257, 26032, 32), ("FashionMNIST", 60000, 10000, 32)]
"""The 5-dataset sequence's tasks: (dataset, training images, test images, input size); notMNIST's counts are the
published archive's, rounded (≈17,000 and ≈1,900)."""
MEASURED_TASKS = 20
"""The task of the second measured training rate (the first is task 1's)."""


@dataclass(frozen=True)
class Task:
    train_images: int
    test_images: int
    input_size: int


@dataclass(frozen=True)
class PaperRun:
    """A paper script's protocol: ``jobs`` (swept weights × repeats), each the ``tasks`` in order, ``epochs`` a
    task."""

    jobs: int
    tasks: Tuple[Task, ...]
    epochs: int


@dataclass(frozen=True)
class Rates:
    """Measured images per second on 32×32 inputs: training an epoch of task 1 (``train_first``) and of task 20 of
    a grown network (``train_last``), evaluating (``evaluate``); and ``scale84``: how many times slower an epoch of
    84×84 images trains than one of 32×32 (task 1, measured in one process), applied to all three at 84×84."""

    train_first: float
    train_last: float
    evaluate: float
    scale84: float


def paper_flags(array: str) -> List[str]:
    """The flags of ``array`` in ``scripts/paper_flags.sh`` (read by bash, as the scripts read them)."""
    script = os.path.join(REPO_ROOT, "scripts", "paper_flags.sh")
    listed = subprocess.run(["bash", "-c", f'source "$0"; printf "%s\\n" "${{{array}[@]}}"', script],
                            capture_output=True, text=True, check=True, timeout=30)
    return listed.stdout.splitlines()


def paper_run(flags: Sequence[str], images_per_class: Optional[Tuple[int, int]] = None) -> PaperRun:
    """The protocol of a paper script's ``flags``: jobs = experiments × ``--repeat``; the tasks of the dataset's
    splits (``--first_split_size``, ``--other_split_size`` classes of ``images_per_class`` training and test images,
    default the dataset's ``IMAGES_PER_CLASS``; the 5-dataset sequence: ``FIVE_DATASETS``); epochs = the last of
    ``--schedule``."""
    config = read_config(list(flags))
    dataset = config.data.dataset
    if dataset == "multidataset":
        tasks = tuple(Task(train, test, size) for _, train, test, size in FIVE_DATASETS)
    else:
        first, other = config.data.first_split_size, config.data.other_split_size
        train, test = images_per_class or IMAGES_PER_CLASS[dataset]
        size = DATASET_INPUTS[dataset].size
        tasks = tuple(Task(train * classes, test * classes, size)
                      for classes in [first] + [other] * ((DATASET_CLASSES[dataset] - first) // other))
    return PaperRun(len(config.experiments()) * config.protocol.repeat, tasks, config.flags["schedule"][-1])


def projected_seconds(run: PaperRun, rates: Rates) -> float:
    """Seconds of one job of ``run`` at ``rates``:

        T = Σ_t [ E · n_t · s(t) + Σ_{u ≤ t} m_u · c_u / r_eval ]

    over tasks t = 1..len(tasks), with E epochs, n_t and m_t task t's training and test images, c = 1 at 32×32 and
    ``scale84`` at 84×84 (c_t in s(t) too), and s(t) the seconds a training image of task t takes, linear in t
    between the measured tasks 1 and 20: s(t) = c_t · (s₁ + (s₂₀ − s₁)·(t − 1)/19), s₁ = 1/``train_first``,
    s₂₀ = 1/``train_last``. Every task seen so far is evaluated after each task, as the protocol does."""
    first, last = 1 / rates.train_first, 1 / rates.train_last
    seconds, evaluated = 0.0, 0.0
    for t, task in enumerate(run.tasks, start=1):
        scale = rates.scale84 if task.input_size == 84 else 1.0
        per_image = scale * (first + (last - first) * (t - 1) / (MEASURED_TASKS - 1))
        evaluated += task.test_images * scale / rates.evaluate
        seconds += run.epochs * task.train_images * per_image + evaluated
    return seconds


def packing_gain(jobs: int, aggregate: Mapping[int, float]) -> float:
    """How many times one job's throughput ``jobs`` jobs packed on a device give: ``aggregate[K] / aggregate[1]``
    for a measured K, linear between measured ones (and 1 job's 1), the largest measured one's beyond them."""
    points = sorted({1: aggregate[1], **aggregate}.items())
    for (low, at_low), (high, at_high) in zip(points, points[1:]):
        if low <= jobs <= high:
            return (at_low + (at_high - at_low) * (jobs - low) / (high - low)) / aggregate[1]
    return points[-1][1] / aggregate[1]


def packed_seconds(job_seconds: float, jobs: int, per_device: int, aggregate: Mapping[int, float]) -> float:
    """Seconds of ``jobs`` equal jobs of ``job_seconds`` each (alone), ``per_device`` at a time on one device, where
    ``aggregate[K]`` is the measured throughput of K packed jobs: they run in waves of k = ``per_device`` jobs (the
    last of the remainder), a wave of k taking ``k · job_seconds / packing_gain(k)``."""
    waves = [per_device] * (jobs // per_device) + ([jobs % per_device] if jobs % per_device else [])
    return sum(k * job_seconds / packing_gain(k, aggregate) for k in waves)


def paper_projection(rates: Rates, aggregate: Mapping[int, float]) -> Dict[str, dict]:
    """Minutes of each paper script (``PAPER_SCRIPTS``) on the measured device: one job at a time, and packed at the
    measured K (``aggregate``'s keys) that finishes first."""
    projection = {}
    for script, array in PAPER_SCRIPTS.items():
        run = paper_run(paper_flags(array))
        one = projected_seconds(run, rates)
        best = min((k for k in aggregate if k <= run.jobs),
                   key=lambda k: packed_seconds(one, run.jobs, k, aggregate))
        projection[script] = {"jobs": run.jobs, "tasks": len(run.tasks), "epochs": run.epochs,
                              "training_images": run.jobs * run.epochs * sum(task.train_images for task in run.tasks),
                              "minutes_one_job_at_a_time": round(run.jobs * one / 60, 1),
                              "jobs_per_device": best,
                              "minutes_packed": round(packed_seconds(one, run.jobs, best, aggregate) / 60, 1)}
    return projection
