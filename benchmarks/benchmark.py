"""``scripts/benchmark.sh`` (``python -m benchmarks.benchmark``): CACL's training and evaluation speed against a dense network's, and a run's peak memory.

Rows, all measured in this process on one device (``--device``), batch 64, 32×32 RGB, 5 classes per task:

1. ``floor``: the dense ``Net`` (the same layers as ``Net_SVD``), forward + backward + Adam step on ready tensors;
2. ``svd_step``: ``Net_SVD`` through ``SVDNet.observe`` (cross-entropy + Hoyer + orthogonality) on the same tensors;
3. ``train_path``: one epoch of a first task through ``agent.learn_task`` with a ``TaskLoader`` over CIFAR-100-shaped
   uint8 images, augmented on the device (crop + flip, CIFAR-100 mean/std), end-of-task step included;
3b. ``train_path_task20``: the same epoch as the 20th task of a network grown over 19 earlier ones (state built
   directly from fresh random components, see ``grown_agent``);
3c. ``train_path_trained``: one epoch of the 5th task of Split Fashion-MNIST (the quickstart's flags) on a network
   really trained on the 4 tasks before it, as the real run of row 6 trains them (``trained_network_rate``): the
   row that shows a slowdown that depends on trained values (subnormal floats on an x86 CPU did);
4. ``eval_path``: ``agent.evaluate`` on each of the 20 tasks of such a model;
4b. ``eval_pruned``: ``agent.evaluate`` on one task of a pruned ``Net_SVD`` (the first task's components of the
   published CIFAR-100 sparse_wt0.4 checkpoint, 0.15× the dense multiply-adds), against
4c. ``eval_floor``: the same evaluation through the dense ``Net`` (the floor of evaluation; rows 4b-4e are
   given as ratios to 4c);
4d. ``eval_two_convolutions`` and 4e. ``eval_composed``: row 4b's pruned task evaluated through its network built in
   either layer form, every layer two thin convolutions (the CPU's form at 0.15× the dense multiply-adds) or one
   composed kernel (CUDA's), whatever this device's rule would choose (``models.deployable.uses_two_convolutions``:
   the measurement behind that rule);
4f. ``eval_path_agnostic``: row 4 with ``--task_agnostic`` (every task's samples also through every task's
   network, as a run evaluates after its 20th task), as a ratio to row 4;
4g-4h. ``eval_shared``, ``eval_shared_agnostic``: evaluating the 20 tasks of the dense ``Net`` with 20 heads (one
   trunk) as a run does, without and with ``--task_agnostic`` (4h as a ratio to 4g; ``without_label_rates``);
5. ``peak_rss_mb``: peak resident memory of a whole 20-task, 1-epoch CIFAR-100-shaped run of ``iBatchLearn.py``,
   in a child process;
6. ``real_run``: each task's training images per second (its results' ``images_per_s``) in a real run of
   ``iBatchLearn.py`` on Split Fashion-MNIST with row 3c's flags, in a child process, and row 3c's rate as a ratio
   to its 5th task's (``trained_to_real``).

Beside the rows, ``first_step_s``: the first step of rows 1 and 2 in seconds (with ``--compile``, what compiling the
step costs); ``aten_ops_per_step``: the ATen operations one training step dispatches (each a kernel launch on a
GPU) for the dense ``Net``, ``Net_SVD`` at its first task and at the 20th of a grown network
(``aten_operations_per_step``).

Rows 3c and 6 read the real Fashion-MNIST where this machine has it (``data/FashionMNIST/raw/`` or Debian's
package), else synthetic files in its format (``trained_data`` says which). Rates are images per second, the best of
``--rounds`` measurements after warm-up, rows 1-3c measured in turn within each round (``interleaved``: every
round's rates are in ``training_rounds``); rows 1-4 and 3c are also given as a ratio to row 1, rows 2-3c as the
median over the rounds of each round's ratio (``ratios_in_rounds``). Every row runs as a run does: on the CPU with
subnormal floats flushed to 0 (``utils.runtime.subnormals_flushed``). The table is printed and written to
``results/benchmark.json``.
"""
import argparse
import contextlib
import copy
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dataloaders import DATASET_INPUTS, BatchTransform, TaskData, TaskLoader, local_idx_folder
from dataloaders.synthetic import write_cifar100, write_mnist_idx
from experiment.builders import load_data, make_agent, make_tasks
from experiment.config import read_config
from experiment.protocols import Progress, TaskStream
from models import svd_layers
from models.deployable import task_network
from utils.files import atomic_json_dump
from utils.runtime import seed_everything, subnormals_flushed

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH_SIZE = 64
CLASSES_PER_TASK = 5
TASKS = 20
SPARSE_WT, ENERGY_SV = 0.1, 3e-5  # the paper's CIFAR-100 setting
PUBLISHED_LAST_IDENTIFIERS = [181, 519, 546, 597, 692]
"""The published CIFAR-100 sparse_wt0.1 checkpoint's identifiers after its 20th task (its final ranks are these plus
the initial ranks [18, 57, 104, 115, 170]: [199, 576, 650, 712, 862])."""

PRUNED_IDENTIFIERS = [5, 11, 12, 11, 8]
"""The published CIFAR-100 sparse_wt0.4 checkpoint's components after its first task."""
QUICKSTART_FLAGS = ["--dataset", "FashionMNIST", "--first_split_size", "2", "--other_split_size", "2",
                    "--sparse_wt", "0.4", "-e", "0.001", "--grow_network"]
"""``scripts/quickstart.sh``'s data and CACL flags (rows 3c and 6): Split Fashion-MNIST, 5 tasks of 2 classes."""
TRAINED_TASKS = 4
"""Tasks trained for real before row 3c's timed one."""


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each row does; ``--quick`` shrinks every row for a smoke test."""

    warmup_steps: int = 3
    steps: int = 20
    rounds: int = 3
    train_images: int = 2500
    test_images: int = 500
    rss_train_per_class: int = 500
    rss_test_per_class: int = 100
    trained_images: int = 3000
    """Training images a task of rows 3c and 6 (the first of each Split Fashion-MNIST task)."""
    without_label_images: int = 100
    """Test images a task of rows 4f-4h (each goes through every task's network in row 4f)."""
    without_label_tasks: int = TASKS
    """Tasks learnt and evaluated in rows 4f-4h."""
    real_data: bool = True
    """Rows 3c and 6 on the real Fashion-MNIST where this machine has it (else always synthetic files)."""


QUICK = Sizes(warmup_steps=1, steps=2, rounds=1, train_images=2 * BATCH_SIZE, test_images=BATCH_SIZE,
              rss_train_per_class=8, rss_test_per_class=2, trained_images=BATCH_SIZE, real_data=False,
              without_label_images=8, without_label_tasks=2)


def get_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device of every row (default: cuda if available, else cpu)")
    parser.add_argument("--quick", action="store_true", help="shrink every row (a smoke test, not a measurement)")
    parser.add_argument("--rounds", type=int, default=None, help="measurements per row, the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--no_memory", action="store_true", help="skip row 5 (the whole 20-task run)")
    parser.add_argument("--no_real_run", action="store_true", help="skip row 6 (the whole Split Fashion-MNIST run)")
    parser.add_argument("--amp", action="store_true", help="every row with iBatchLearn's --amp (bfloat16 autocast)")
    parser.add_argument("--compile", action="store_true", help="every row with iBatchLearn's --compile")
    parser.add_argument("--cuda_graph", action="store_true",
                        help="every row with iBatchLearn's --cuda_graph (the training step captured, on CUDA)")
    parser.add_argument("--output", default=os.path.join("results", "benchmark.json"), help="where the JSON goes")
    return parser.parse_args(argv)


# --- timing ------------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(work: Callable[[], Any], device: torch.device) -> Tuple[Any, float]:
    """``(work(), its seconds)``: run once, timed with ``perf_counter``, the device's queue drained before and
    after."""
    synchronize(device)
    start = time.perf_counter()
    result = work()
    synchronize(device)
    return result, time.perf_counter() - start


def images_per_second(work: Callable[[], int], device: torch.device) -> float:
    """Run ``work`` (which returns the number of images it processed) once, timed (``timed``)."""
    images, seconds = timed(work, device)
    return images / seconds


# --- agents and data ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Speed:
    """The driver's speed options: ``--amp``, ``--compile``, ``--cuda_graph``; channels-last follows the device as in
    the driver."""

    amp: bool = False
    compile: bool = False
    cuda_graph: bool = False

    def flags(self) -> List[str]:
        """The driver's flags of the options that are on."""
        return [f"--{option}" for option in ("amp", "compile", "cuda_graph") if getattr(self, option)]


COMMON_FLAGS = ["--gpuid", "-1", "--schedule", "1", "--print_freq", str(10 ** 9), "--dataset", "CIFAR100"]
"""One epoch, no logging (the device is the benchmark's own)."""
DENSE_FLAGS = ["--model_type", "customnet", "--model_name", "Net", "--agent_type", "default", "--agent_name",
               "NormalNN"]
CACL_FLAGS = ["--sparse_wt", str(SPARSE_WT), "-e", str(ENERGY_SV), "--grow_network"]
"""The paper's CIFAR-100 setting."""


def heads(n_tasks: int) -> Dict[str, int]:
    return {str(task): CLASSES_PER_TASK for task in range(1, n_tasks + 1)}


def agent_of(flags: List[str], device: torch.device, speed: Speed, n_tasks: int = 1, image_size: int = 32):
    """The agent the driver builds from ``flags`` (and ``speed``'s), on ``device`` (channels-last on the CPU, as in the
    driver), with ``n_tasks`` heads, for ``image_size``² inputs."""
    config = read_config([*COMMON_FLAGS, *flags, *speed.flags()])
    return make_agent(config, config.experiments()[0], device, image_size, heads(n_tasks))


def dense_agent(device: torch.device, speed: Speed):
    return agent_of(DENSE_FLAGS, device, speed)


def svd_agent(device: torch.device, speed: Speed, n_tasks: int = 1, image_size: int = 32):
    return agent_of(CACL_FLAGS, device, speed, n_tasks, image_size)


def plausible_identifiers(initial_ranks: List[int], n_tasks: int) -> List[List[int]]:
    """Cumulative prefixes after each of ``n_tasks`` tasks: 80 % of the initial ranks after the first task, then
    linear up to ``PUBLISHED_LAST_IDENTIFIERS``."""
    first = [int(0.8 * rank) for rank in initial_ranks]
    return [[round(f + (last - f) * task / (TASKS - 1)) for f, last in zip(first, PUBLISHED_LAST_IDENTIFIERS)]
            for task in range(n_tasks)]


def grown_agent(device: torch.device, speed: Speed, tasks_trained: int, image_size: int = 32):
    """An agent as after ``tasks_trained`` tasks of a grown CIFAR-100 run, built directly (not trained), for
    ``image_size``² inputs.

    Identifiers: ``plausible_identifiers``; each layer's rank is the last task's identifier plus its initial rank (the
    room ``--grow_network`` leaves on CIFAR-100, which gives the published final ranks after 20 tasks); components are
    freshly initialised with ``set_components``.
    """
    agent = svd_agent(device, speed, TASKS, image_size)
    identifiers = plausible_identifiers(agent.initial_ranks, tasks_trained)
    chann_used = {0: identifiers[0]}
    chann_used.update({t: [now - before for now, before in zip(identifiers[t], identifiers[t - 1])]
                       for t in range(1, tasks_trained)})
    agent.load_continual_state({"task_identifiers": dict(enumerate(identifiers)), "chann_used": chann_used,
                                "task_name_count": {str(t + 1): t for t in range(tasks_trained)}})
    for layer, used, initial in zip(svd_layers(agent.model), identifiers[-1], agent.initial_ranks):
        layer.set_components(*layer.fresh_components(used + initial))
    return agent


def synthetic_task(name: str, n_images: int, augment: bool, seed: int, image_size: int = 32) -> TaskData:
    """CIFAR-100-shaped uint8 images (3×32×32, or ``image_size``²) with labels 0..4, transformed as CIFAR-100's train
    or test split."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_images, 3, image_size, image_size), dtype=torch.uint8, generator=generator)
    targets = torch.randint(0, CLASSES_PER_TASK, (n_images,), generator=generator)
    cifar100 = DATASET_INPUTS["CIFAR100"]
    return TaskData(name, images, targets, BatchTransform(cifar100.mean, cifar100.std, augment=augment))


# --- rows --------------------------------------------------------------------------------------------------------
Measure = Callable[[int], float]
"""One round of a row: ``measure(round)`` -> images per second."""


def interleaved(measures: Dict[str, Measure], rounds: int) -> Dict[str, List[float]]:
    """Each row's rate in every one of ``rounds`` rounds, the rows measured in turn within a round: a drift of the
    machine's speed while the benchmark runs (clock, other load) reaches every row alike, where measured row by row
    it would reach the later rows only and move their ratios to row 1."""
    rates: Dict[str, List[float]] = {name: [] for name in measures}
    for round_ in range(rounds):
        for name, measure in measures.items():
            rates[name].append(measure(round_))
    return rates


def step_measures(device: torch.device, speed: Speed, sizes: Sizes) -> Tuple[Dict[str, Measure], Dict[str, float]]:
    """Rows 1 and 2: ``(a measure of each, first_step_s)``. A round is ``sizes.steps`` of the loop's training steps
    (``training_step``: the step and its NaN watch; with ``--cuda_graph`` warmed up, captured and replayed) on one
    ready batch, after each model's warm-up; ``first_step_s`` is each model's first step in seconds (with
    ``--compile``, its compilation)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(BATCH_SIZE, 3, 32, 32, generator=generator).to(device)
    targets = torch.randint(0, CLASSES_PER_TASK, (BATCH_SIZE,), generator=generator).to(device)
    batch = (inputs, targets, ["1"] * BATCH_SIZE)
    agents = {"floor": dense_agent(device, speed), "svd_step": svd_agent(device, speed)}
    first_step = {}
    for name, agent in agents.items():
        agent.begin_task("1")
        agent.model.train()
        first_step[name] = timed(lambda: agent.training_step.run(*batch), device)[1]
        for _ in range(sizes.warmup_steps - 1):
            agent.training_step.run(*batch)

    def steps(agent) -> int:
        for _ in range(sizes.steps):
            agent.training_step.run(*batch)
        return sizes.steps * BATCH_SIZE

    return {name: lambda _, agent=agent: images_per_second(lambda: steps(agent), device)
            for name, agent in agents.items()}, first_step


def step_rates(device: torch.device, speed: Speed, sizes: Sizes) -> dict:
    """Rows 1 and 2 alone (``step_measures``), in interleaved rounds, each row's best, and ``first_step_s``."""
    measures, first_step = step_measures(device, speed, sizes)
    rates = interleaved(measures, sizes.rounds)
    return {**{name: max(values) for name, values in rates.items()}, "first_step_s": first_step}


def train_path_measure(device: torch.device, speed: Speed, sizes: Sizes, tasks_before: int,
                       image_size: int = 32) -> Measure:
    """Rows 3 and 3b: a round is one epoch of task ``tasks_before + 1`` through ``learn_task`` on a fresh agent, data
    handling included (on ``image_size``² images: 84 for miniImageNet's, which the GPU check's projection
    measures), its images and their order drawn from the round's number."""
    name = str(tasks_before + 1)

    def measure(round_: int) -> float:
        agent = (grown_agent(device, speed, tasks_before, image_size) if tasks_before
                 else svd_agent(device, speed, image_size=image_size))
        loader = TaskLoader(synthetic_task(name, sizes.train_images, augment=True, seed=round_, image_size=image_size),
                            BATCH_SIZE, shuffle=True, device=device, generator=torch.Generator().manual_seed(round_))
        return images_per_second(lambda: learn(agent, name, loader), device)

    return measure


def train_path_rate(device: torch.device, speed: Speed, sizes: Sizes, tasks_before: int,
                    image_size: int = 32) -> float:
    """Row 3 or 3b alone (``train_path_measure``): its best round."""
    measure = train_path_measure(device, speed, sizes, tasks_before, image_size)
    return max(measure(round_) for round_ in range(sizes.rounds))


def learn(agent, name: str, loader: TaskLoader) -> int:
    agent.learn_task(name, loader)
    return len(loader.targets)


@contextlib.contextmanager
def fashion_mnist_root(sizes: Sizes) -> Iterator[Tuple[str, str]]:
    """``(dataroot, what it holds)`` for rows 3c and 6: the real Fashion-MNIST where this machine has it (under
    ``data/`` of the working directory or of the repository, or Debian's package; never downloaded), else synthetic
    files in its official format in a temporary folder (each class's template plus noise, as many training images a
    task as ``sizes.trained_images``)."""
    for root in ("data", os.path.join(REPO_ROOT, "data")):
        if sizes.real_data and local_idx_folder("FashionMNIST", root) is not None:
            yield root, "real Fashion-MNIST"
            return
    with tempfile.TemporaryDirectory(prefix="cacl-benchmark-fmnist-") as folder:
        write_mnist_idx(folder, "FashionMNIST", n_train=5 * sizes.trained_images, n_test=5 * BATCH_SIZE)
        yield folder, "synthetic Fashion-MNIST-format files"


def trained_flags(dataroot: str, sizes: Sizes, speed: Speed) -> List[str]:
    """Rows 3c and 6: the quickstart's data and method flags, one epoch a task of ``sizes.trained_images`` images,
    batch ``BATCH_SIZE``."""
    return [*QUICKSTART_FLAGS, "--dataroot", dataroot, "--batch_size", str(BATCH_SIZE), "--schedule", "1",
            "--max_train_samples", str(sizes.trained_images), "--print_freq", str(10 ** 9), *speed.flags()]


def trained_agent(device: torch.device, speed: Speed, sizes: Sizes, dataroot: str):
    """``(agent, stream)``: the agent of row 6's run after its first ``TRAINED_TASKS`` tasks, trained here as the
    first repeat of that run trains them (seeded with ``--seed``; the driver's task order, tasks, agent and
    loaders), and the run's tasks."""
    config = read_config(["--gpuid", "-1", *trained_flags(dataroot, sizes, speed)])
    data = load_data(config.data)
    seed_everything(config.protocol.seed)
    tasks = make_tasks(config, data, device)
    agent = make_agent(config, config.experiments()[0], device, tasks.image_size, tasks.out_dim)
    for name in tasks.stream.names[:TRAINED_TASKS]:
        agent.learn_task(name, tasks.stream.train_loader(name))
    return agent, tasks.stream


def trained_network_measure(device: torch.device, speed: Speed, sizes: Sizes, dataroot: str) -> Measure:
    """Row 3c: a round is one epoch of the 5th Split Fashion-MNIST task through ``learn_task`` (its end-of-task step
    included), on a copy of the network trained on the 4 tasks before it (``trained_agent``, trained once)."""
    agent, stream = trained_agent(device, speed, sizes, dataroot)
    task = stream.names[TRAINED_TASKS]

    def measure(_) -> float:
        trial, loader = copy.deepcopy(agent), stream.train_loader(task)
        return images_per_second(lambda: learn(trial, task, loader), device)

    return measure


def trained_network_rate(device: torch.device, speed: Speed, sizes: Sizes, dataroot: str) -> float:
    """Row 3c alone (``trained_network_measure``): its best round."""
    measure = trained_network_measure(device, speed, sizes, dataroot)
    return max(measure(round_) for round_ in range(sizes.rounds))


def training_rates(device: torch.device, speed: Speed, sizes: Sizes, dataroot: str) -> dict:
    """Rows 1-3c in interleaved rounds (``interleaved``): each row's best round, ``first_step_s``
    (``step_measures``), ``training_rounds`` (every round's rate of each row: their spread says how steady the
    machine was) and ``ratios_in_rounds`` (each row's median ratio to row 1 over the rounds)."""
    measures, first_step = step_measures(device, speed, sizes)
    measures["train_path"] = train_path_measure(device, speed, sizes, tasks_before=0)
    measures["train_path_task20"] = train_path_measure(device, speed, sizes, tasks_before=TASKS - 1)
    measures["train_path_trained"] = trained_network_measure(device, speed, sizes, dataroot)
    rounds = interleaved(measures, sizes.rounds)
    return {**{name: max(rates) for name, rates in rounds.items()}, "first_step_s": first_step,
            "training_rounds": rounds, "ratios_in_rounds": ratios_in_rounds(rounds)}


def ratios_in_rounds(rounds: Dict[str, List[float]], reference: str = "floor") -> Dict[str, float]:
    """Each row's ratio to row 1 as the table gives it for rows 1-3c: ``median_r (rate_r / floor_r)``, the median
    over the rounds of the row's rate in round ``r`` by row 1's in the same round. Steadier than the ratio of the
    best rounds, which a single fast round of either row moves (three whole benchmarks on this 2-core machine: a
    row's ratio of the best rounds spread over up to 0.21 between them, this median over up to 0.05; README,
    *Speed*)."""
    return {name: statistics.median(rate / floor for rate, floor in zip(rates, rounds[reference]))
            for name, rates in rounds.items()}


def eval_path_rate(device: torch.device, speed: Speed, sizes: Sizes) -> float:
    """Row 4: ``agent.evaluate`` on each task of a 20-task model, each through its own components and head."""
    agent = grown_agent(device, speed, TASKS)
    loaders = [TaskLoader(synthetic_task(str(task), sizes.test_images, augment=False, seed=100 + task), BATCH_SIZE,
                          shuffle=False, device=device) for task in range(1, TASKS + 1)]
    agent.evaluate(loaders[0])  # warm-up

    def evaluate_all() -> int:
        for loader in loaders:
            agent.evaluate(loader)
        return TASKS * sizes.test_images

    return max(images_per_second(evaluate_all, device) for _ in range(sizes.rounds))


def pruned_agent(device: torch.device, speed: Speed):
    """``Net_SVD`` whose one trained task uses ``PRUNED_IDENTIFIERS`` components (random ones)."""
    agent = svd_agent(device, speed)
    agent.load_continual_state({"task_identifiers": {0: PRUNED_IDENTIFIERS}, "task_name_count": {"1": 0},
                                "chann_used": {0: PRUNED_IDENTIFIERS}})
    return agent


def evaluation_rates(device: torch.device, speed: Speed, sizes: Sizes) -> Dict[str, float]:
    """Rows 4b and 4c: ``agent.evaluate`` on one task, the pruned and the dense model in alternating rounds."""
    loader = TaskLoader(synthetic_task("1", sizes.test_images, augment=False, seed=100), BATCH_SIZE, shuffle=False,
                        device=device)
    agents = {"eval_pruned": pruned_agent(device, speed), "eval_floor": dense_agent(device, speed)}

    def evaluate(agent) -> int:
        agent.evaluate(loader)
        return sizes.test_images

    best = {name: 0.0 for name in agents}
    for agent in agents.values():
        agent.evaluate(loader)  # warm-up
    for _ in range(sizes.rounds):
        for name, agent in agents.items():
            best[name] = max(best[name], images_per_second(lambda: evaluate(agent), device))
    return best


LAYER_FORMS = {"eval_two_convolutions": "cpu", "eval_composed": "cuda"}
"""Rows 4d and 4e: the device whose layer-form rule builds the pruned task's network (at 0.15× the dense
multiply-adds, the CPU's rule makes every layer two thin convolutions, CUDA's one composed kernel)."""


def layer_form_rates(device: torch.device, speed: Speed, sizes: Sizes) -> Dict[str, float]:
    """Rows 4d and 4e: row 4b's evaluation of the pruned task through its network built in either layer form
    (``LAYER_FORMS``), in alternating rounds."""
    loader = TaskLoader(synthetic_task("1", sizes.test_images, augment=False, seed=100), BATCH_SIZE, shuffle=False,
                        device=device)
    agent = pruned_agent(device, speed)
    networks = {row: task_network(agent.model.feature_layers(), agent.task_ranks("1"), agent.model.last["1"],
                                  form_device).to(memory_format=agent.memory_format)
                for row, form_device in LAYER_FORMS.items()}

    @torch.no_grad()
    def evaluate(network) -> int:
        correct = 0
        for inputs, targets, _ in loader:
            correct = correct + (agent.network_logits(network, "1", inputs).argmax(1) == targets).sum()
        int(correct)  # read once, as NormalNN.evaluate reads it
        return sizes.test_images

    best = {row: 0.0 for row in networks}
    for network in networks.values():
        evaluate(network)  # warm-up
    for _ in range(sizes.rounds):
        for row, network in networks.items():
            best[row] = max(best[row], images_per_second(lambda: evaluate(network), device))
    return best


class AtenOperations(TorchDispatchMode):
    """Counts the ATen operations dispatched inside the block (autograd's backward operations included: the engine
    runs them under the same mode)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def aten_operations_per_step(device: torch.device) -> Dict[str, int]:
    """ATen operations of one eager training step (``observe``: the forward pass, the loss with every term, the
    backward pass, the optimizer step, ``after_step``) on one ready batch of 64, counted after a warm-up step (which
    creates the optimizer's state): ``dense`` (``Net``), ``svd_task1`` (``Net_SVD`` at its first task),
    ``svd_task20`` (the 20th task of ``grown_agent``). Each is a kernel launch on a GPU; the count depends on the
    code's path, not on the device's speed (on CUDA torch's optimizers take their ``foreach`` path, which launches
    one kernel for many parameters)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(BATCH_SIZE, 3, 32, 32, generator=generator).to(device)
    targets = torch.randint(0, CLASSES_PER_TASK, (BATCH_SIZE,), generator=generator).to(device)
    agents = {"dense": ("1", dense_agent(device, Speed())), "svd_task1": ("1", svd_agent(device, Speed())),
              "svd_task20": (str(TASKS), grown_agent(device, Speed(), TASKS - 1))}
    counts = {}
    for name, (task, agent) in agents.items():
        batch = (inputs, targets, [task] * BATCH_SIZE)
        agent.begin_task(task)
        agent.model.train()
        agent.observe(*batch)
        with AtenOperations() as counter:
            agent.observe(*batch)
        counts[name] = counter.count
    return counts


def without_label_rates(device: torch.device, speed: Speed, sizes: Sizes) -> Dict[str, float]:
    """Rows 4f-4h: evaluating the tasks learnt (``sizes.without_label_tasks``: 20) after the last as a run does
    (``TaskStream.accuracies``), on ``sizes.without_label_images`` images a task, for row 4's CACL network with
    ``--task_agnostic`` (each task's samples through every task's network and head,
    ``TaskStream.evaluate_without_label``: 20 passes a batch), and for fine-tuning's dense ``Net`` with 20 heads (one
    trunk pass a batch, then 20 heads) without and with it; in alternating rounds after a warm-up on two tasks, rates
    in images evaluated per second."""
    names = [str(task) for task in range(1, sizes.without_label_tasks + 1)]
    evaluation = {name: synthetic_task(name, sizes.without_label_images, augment=False, seed=100 + int(name))
                  for name in names}
    dense = agent_of(DENSE_FLAGS, device, speed, TASKS)
    cases = {"eval_path_agnostic": (grown_agent(device, speed, TASKS), True), "eval_shared": (dense, False),
             "eval_shared_agnostic": (dense, True)}

    def evaluate(agent, without_label: bool, tasks: List[str]) -> int:
        stream = TaskStream(tasks, {}, evaluation, BATCH_SIZE, device, task_agnostic=without_label)
        stream.accuracies(Progress(), tasks[-1], [(agent, name) for name in tasks], tasks)
        return len(tasks) * sizes.without_label_images

    for agent, without_label in cases.values():
        evaluate(agent, without_label, names[:2])  # warm-up
    best = dict.fromkeys(cases, 0.0)
    for _ in range(sizes.rounds):
        for key, (agent, without_label) in cases.items():
            best[key] = max(best[key], images_per_second(lambda: evaluate(agent, without_label, names), device))
    return best


def gpuid(device: torch.device) -> List[str]:
    """The driver's ``--gpuid`` for ``device``."""
    return ["--gpuid", str(device.index or 0) if device.type == "cuda" else "-1"]


PEAK_MEMORY_WRAPPER = """
import atexit, runpy, sys
out, sys.argv = sys.argv[1], sys.argv[2:]
def record():
    with open("/proc/self/status") as status, open(out, "w") as file:
        file.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(record)
runpy.run_path(sys.argv[0], run_name="__main__")
"""
"""Runs a script and, when it exits, writes its peak resident set (kB, ``VmHWM`` of ``/proc/self/status``) to the
file named by its first argument. The child's own peak: ``ru_maxrss`` of a child also counts what it shared with its
parent between ``fork`` and ``exec`` (Linux keeps the larger high-water mark across ``exec``), i.e. the parent's
whole resident set."""


def driver_in_child(flags: List[str], folder: str, threads: Optional[int], what: str) -> float:
    """``iBatchLearn.py flags`` in a child process working in ``folder`` (its log: ``folder/run.log``); returns its
    peak resident set in MB (``PEAK_MEMORY_WRAPPER`` on Linux; elsewhere ``ru_maxrss``, which may include the
    parent's). A failed run is a ``RuntimeError`` with the end of its log."""
    environment = dict(os.environ)
    if threads is not None:
        environment["OMP_NUM_THREADS"] = str(threads)
    peak_file = os.path.join(folder, "peak_kb")
    script = os.path.join(REPO_ROOT, "iBatchLearn.py")
    linux = os.path.exists("/proc/self/status")
    command = [sys.executable, *(["-c", PEAK_MEMORY_WRAPPER, peak_file] if linux else []), script, *flags]
    with open(os.path.join(folder, "run.log"), "wb") as log:
        child = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=environment)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        with open(os.path.join(folder, "run.log"), encoding="utf-8", errors="replace") as log:
            tail = log.read()[-3000:]
        raise RuntimeError(f"{what} failed (exit status {os.waitstatus_to_exitcode(status)}):\n{tail}")
    if linux:
        with open(peak_file) as file:
            return int(file.read()) / 1024
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS
    return usage.ru_maxrss / (1024 * 1024 if platform.system() == "Darwin" else 1024)


def peak_rss_mb(device: torch.device, speed: Speed, sizes: Sizes, threads: Optional[int]) -> float:
    """Row 5: peak resident set (MB) of ``iBatchLearn.py`` on 20 CIFAR-100-shaped tasks, 1 epoch each, in a child."""
    with tempfile.TemporaryDirectory(prefix="cacl-benchmark-") as folder:
        write_cifar100(folder, sizes.rss_train_per_class, sizes.rss_test_per_class)
        flags = ["--dataset", "CIFAR100", "--schedule", "1", "--repeat", "1", "--grow_network", "--batch_size",
                 str(BATCH_SIZE), "--sparse_wt", str(SPARSE_WT), "-e", str(ENERGY_SV), "--dataroot", folder,
                 *gpuid(device), *speed.flags()]
        return driver_in_child(flags, folder, threads, "the 20-task run")


def real_run_record(device: torch.device, speed: Speed, sizes: Sizes, dataroot: str,
                    threads: Optional[int]) -> dict:
    """Row 6: the results record (``output_run0.json``) of a real ``iBatchLearn.py`` run of row 3c's flags (one
    repeat) in a child process."""
    with tempfile.TemporaryDirectory(prefix="cacl-benchmark-run-") as folder:
        driver_in_child([*trained_flags(os.path.abspath(dataroot), sizes, speed), *gpuid(device), "--repeat", "1",
                         "--exp_name", "real"], folder, threads, "the Split Fashion-MNIST run")
        with open(os.path.join(folder, "results", "real_sparse_wt0.4", "output_run0.json")) as file:
            return json.load(file)


def rates_in_training_order(record: dict) -> Dict[str, float]:
    """A results record's ``images_per_s``, in training order (its accuracy matrix's rows)."""
    return {task: record["images_per_s"][task] for task in record["acc_matrix"]}


# --- report ------------------------------------------------------------------------------------------------------
ROWS = [
    ("1", "floor", "dense Net step (ready tensors)", "floor"),
    ("2", "svd_step", "Net_SVD step, CACL loss (ready tensors)", "floor"),
    ("3", "train_path", "task 1 epoch via learn_task + TaskLoader", "floor"),
    ("3b", "train_path_task20", "task 20 epoch, grown network", "floor"),
    ("3c", "train_path_trained", "task 5 epoch, 4 tasks trained (F-MNIST)", "floor"),
    ("4", "eval_path", "evaluate 20 tasks", "floor"),
    ("4b", "eval_pruned", "evaluate a pruned task (0.15x dense MACs)", "eval_floor"),
    ("4c", "eval_floor", "evaluate a task, dense Net", "eval_floor"),
    ("4d", "eval_two_convolutions", "4b, two thin convolutions a layer", "eval_floor"),
    ("4e", "eval_composed", "4b, one composed kernel a layer", "eval_floor"),
    ("4f", "eval_path_agnostic", "evaluate 20 tasks, --task_agnostic", "eval_path"),
    ("4g", "eval_shared", "evaluate 20 tasks, dense Net, 20 heads", "floor"),
    ("4h", "eval_shared_agnostic", "the same, --task_agnostic", "eval_shared"),
]
"""(row, key, what, the row it is a ratio to)."""
SPEED_KEYS = ("channels_last", "amp", "compile", "cuda_graph")
"""The results' keys of the speed options, as the table's title lists those that are on."""


def format_table(results: dict) -> str:
    lines = [f"CACL benchmark on {results['device']} (torch {results['torch']}, {results['threads']} threads, "
             f"batch {BATCH_SIZE}{''.join(f', {option}' for option in SPEED_KEYS if results[option])})"
             f"{' [quick: not a measurement]' if results['quick'] else ''}",
             f"{'row':>3}  {'what':<42} {'images/s':>10} {'ratio':>8}  (rows 1-4, 3c, 4g to row 1, 4b-4e to 4c, "
             f"4f to 4, 4h to 4g; rows 2-3c: the median over the rounds of each round's ratio)"]
    in_rounds = results["ratios_in_rounds"]
    for row, key, what, reference in ROWS:
        ratio = in_rounds[key] if key in in_rounds else results[key] / results[reference]
        lines.append(f"{row:>3}  {what:<42} {results[key]:10.1f} {ratio:8.2f}")
    rss = results["peak_rss_mb"]
    lines.append(f"{'5':>3}  {'peak RSS, 20 tasks x 1 epoch (MB)':<42} "
                 f"{'skipped' if rss is None else f'{rss:.0f}':>10}")
    real = results["real_run"]
    if real is None:
        lines.append(f"{'6':>3}  {'real run, images/s per task':<42} {'skipped':>10}")
    else:
        first = next(iter(real.values()))
        lines.append(f"{'6':>3}  real run, images/s per task (ratio to its first): "
                     + ", ".join(f"{task} {rate:.1f} ({rate / first:.2f})" for task, rate in real.items()))
        lines.append(f"{'':>3}  row 3c / the real run's task 5: {results['trained_to_real']:.2f}")
    lines.append(f"{'':>3}  rows 3c and 6 on {results['trained_data']}")
    rounds = results["training_rounds"]
    lines.append(f"{'':>3}  rows 1-3c in turn in each of {len(rounds['floor'])} rounds; worst / best round: "
                 + ", ".join(f"{row} {min(rounds[key]) / max(rounds[key]):.2f}"
                             for row, key, _, _ in ROWS if key in rounds))
    lines.append(f"{'':>3}  first step (s, {'compilation included' if results['compile'] else 'eager'}): "
                 + ", ".join(f"{name} {seconds:.2f}" for name, seconds in results["first_step_s"].items()))
    lines.append(f"{'':>3}  ATen operations per training step: "
                 + ", ".join(f"{name} {count}" for name, count in results["aten_ops_per_step"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = get_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else Sizes()
    if args.rounds is not None:
        sizes = dataclasses.replace(sizes, rounds=args.rounds)
    torch.manual_seed(0)
    results = {"device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "quick": args.quick,
               "channels_last": device.type == "cpu", "amp": args.amp, "compile": args.compile,
               "cuda_graph": args.cuda_graph}
    speed = Speed(amp=args.amp, compile=args.compile, cuda_graph=args.cuda_graph)
    with subnormals_flushed(device), fashion_mnist_root(sizes) as (dataroot, trained_data):
        results.update(training_rates(device, speed, sizes, dataroot))
        results["eval_path"] = eval_path_rate(device, speed, sizes)
        results.update(evaluation_rates(device, speed, sizes))
        results.update(layer_form_rates(device, speed, sizes))
        results["aten_ops_per_step"] = aten_operations_per_step(device)
        results.update(without_label_rates(device, speed, sizes))
        results["peak_rss_mb"] = None if args.no_memory else peak_rss_mb(device, speed, sizes, args.threads)
        results["real_run"] = None if args.no_real_run else rates_in_training_order(
            real_run_record(device, speed, sizes, dataroot, args.threads))
    results["trained_data"] = trained_data
    results["trained_to_real"] = (None if results["real_run"] is None else
                                  results["train_path_trained"] / list(results["real_run"].values())[TRAINED_TASKS])
    print(format_table(results))
    atomic_json_dump(results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
