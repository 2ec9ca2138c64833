"""The loop's training step, one function run eagerly or replayed as a CUDA graph (``--cuda_graph``).

PyTorch's recipe for capturing a whole step (its CUDA-graph notes, "whole-network capture"): the step reads its batch
from static tensors; it runs eagerly a first time on a side stream (the warm-up: the optimizer's state, cuDNN's
autotuning and every other lazy initialisation happen there, not in the graph); it is captured once
(``torch.cuda.graph``, with the optimizer made ``capturable``) and then replayed for every later batch, each copied
into the static tensors first. A replay runs the kernels the capture recorded, with the numbers Python gave them
then: the learning rates, the layers' modes, the batch's shape and task. Hence :class:`TrainingStep`'s rules:

- a graph is kept per batch shape and task: an epoch's last, smaller batch has its own (its first occurrence is its
  warm-up, its second is captured); a batch of several tasks (rehearsal, joint training), whose grouping into heads
  varies from batch to batch, runs eagerly;
- every graph is dropped, and captured again after a warm-up at its shape's next batch, when the optimizer's
  learning rates (``--schedule``'s drops) or a layer's training mode changed (both checked before every step), and
  when the method says its step changed (``discard``: PackNet's pruning replaces its masks and the optimizer's
  state);
- the loop makes a new ``TrainingStep`` for every task, a resumed one too, so no graph outlives its task.

Without CUDA the same static-tensor step runs eagerly (``graphs`` None): the CPU runs the same function.

``--compile`` instead puts the same whole step through ``torch.compile`` (:class:`CompiledStep`).
"""
import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, Hashable, List, Optional, Protocol, Sequence, Tuple

import torch
from torch import nn

from agents.optim import capture_safe_optimizer

log = logging.getLogger(__name__)

Terms = Dict[str, torch.Tensor]
StepFunction = Callable[[torch.Tensor, torch.Tensor, Sequence[str]], Terms]
"""The loop's step: ``(inputs, targets, task names) -> the loss terms``."""


def capture_obstacle(method: type, optimizer: str) -> str:
    """Why ``--cuda_graph`` cannot capture the step of ``method`` (a ``NormalNN`` subclass, its
    ``capture_obstacle``) under ``--optimizer optimizer`` (``agents.optim.capture_safe_optimizer``); empty when it
    can."""
    if method.capture_obstacle:
        return f"{method.__name__}'s step {method.capture_obstacle}"
    if not capture_safe_optimizer(optimizer):
        return f"--optimizer {optimizer} keeps host-side state its step reads (it has no capturable form)"
    return ""


RECOMPILE_LIMIT = 1024
"""Compiled graphs dynamo keeps per function (``torch._dynamo.config.recompile_limit``, 8 by default) while
``--compile`` is on: a graph per task and batch shape, kept across tasks."""


def compiled(function: Callable) -> Callable:
    """``--compile``: ``torch.compile(function, dynamic=False)``, a graph per distinct set of input shapes (an epoch's
    last, smaller batch has its own: no dynamic-shape kernels), kept for the whole run: no ``torch._dynamo.reset()``
    between tasks, so a shape set met again (a resumed task; every task of a dense network) reuses what was
    compiled, and inductor's graph cache serves a graph that only its guards tell apart (a new task's optimizer).
    Dynamo's recompile limits are raised to ``RECOMPILE_LIMIT`` (at 8, the default, a sequence's ninth task would
    run uncompiled for good)."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(function, dynamic=False)


class CompiledStep:
    """``--compile``'s step function: the loop's whole step (forward, the loss with every term, backward, the
    optimizer's step, ``after_step``, the NaN watch) through ``compiled``, for a method whose step keeps every number
    that changes from step to step in tensors (no ``capture_obstacle``); dynamo splits it at ``backward``, whose
    graph AOTAutograd compiled with the forward's. A batch of several tasks (rehearsal, joint training) runs eagerly:
    its grouping into heads varies from batch to batch, and each grouping would be compiled anew.

    The first step of each batch shape and task is where compilation happens: its wall seconds (compilation and
    the step's host time) are logged and kept in ``first_step_seconds``."""

    def __init__(self, step: StepFunction):
        self.step = step
        self.compiled_step = compiled(step)
        self.first_step_seconds: Dict[Hashable, float] = {}

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, tasks: Sequence[str]) -> Terms:
        key = batch_key(inputs, targets, tasks)
        if key is None:
            return self.step(inputs, targets, tasks)
        if key in self.first_step_seconds:
            return self.compiled_step(inputs, targets, tasks)
        started = time.perf_counter()
        terms = self.compiled_step(inputs, targets, tasks)
        self.first_step_seconds[key] = time.perf_counter() - started
        log.info("--compile: the first step of task %s on batches of shape %s took %.1f s (compilation included)",
                 key[-1], key[0], self.first_step_seconds[key])
        return terms


class StepGraphs(Protocol):
    """How ``TrainingStep`` warms up and captures a step (``CudaGraphs`` on a GPU; the tests inject a stand-in)."""

    def warm_up(self, step: Callable[[], Terms]) -> Terms:
        """Run ``step`` eagerly, as the warm-up before its capture."""

    def capture(self, step: Callable[[], Terms]) -> Tuple[Callable[[], None], Terms]:
        """Capture ``step`` without running it: ``(replay, the terms each replay writes)``."""


class CudaGraphs:
    """``StepGraphs`` on a CUDA device, PyTorch's recipe: the warm-up on a side stream, the capture with
    ``torch.cuda.graph`` (each graph with its own memory pool)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream: Optional[torch.cuda.Stream] = None

    def warm_up(self, step: Callable[[], Terms]) -> Terms:
        if self.stream is None:
            self.stream = torch.cuda.Stream(self.device)
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            terms = step()
        current.wait_stream(self.stream)
        return terms

    def capture(self, step: Callable[[], Terms]) -> Tuple[Callable[[], None], Terms]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            terms = step()
        return graph.replay, terms


@dataclass
class StaticBatch:
    """The static tensors of one batch shape and task, and its graph once captured."""

    inputs: torch.Tensor
    targets: torch.Tensor
    tasks: List[str]
    warmed_up: bool = False
    replay: Optional[Callable[[], None]] = None
    terms: Optional[Terms] = None
    """What each replay writes: the step's loss terms."""


def batch_key(inputs: torch.Tensor, targets: torch.Tensor, tasks: Sequence[str]) -> Optional[Hashable]:
    """What a graph of the step is captured for: the batch's shapes and dtypes and its one task; None for an empty
    batch or one of several tasks (their grouping into heads varies from batch to batch)."""
    if not len(tasks) or any(task != tasks[0] for task in tasks):
        return None
    return tuple(inputs.shape), inputs.dtype, tuple(targets.shape), targets.dtype, tasks[0]


class TrainingStep:
    """The loop's step for one task (see the module docstring): ``run(inputs, targets, tasks)`` takes one optimizer
    step on the batch and returns its loss terms.

    - ``static`` False: ``step`` runs on the batch itself, eagerly (the default: today's step);
    - ``static`` True, ``graphs`` None (``--cuda_graph`` without CUDA): each batch of one task is copied into the
      static tensors of its shape and ``step`` runs on them, eagerly;
    - ``static`` True with ``graphs`` (``--cuda_graph`` on CUDA): the same, warmed up, captured and replayed.

    ``counts`` says how many steps ran each way: ``eager`` (on the batch itself), ``static`` (eagerly on the static
    tensors), ``warm_up``, ``captured`` (captures; each is then replayed) and ``replayed``.
    """

    def __init__(self, step: StepFunction, optimizer: torch.optim.Optimizer, model: nn.Module, static: bool,
                 graphs: Optional[StepGraphs] = None):
        self.step = step
        self.optimizer = optimizer
        self.modules = list(model.modules())
        self.static = static
        self.graphs = graphs
        self.batches: Dict[Hashable, StaticBatch] = {}
        self.captured_with: Optional[Hashable] = None
        self.counts: Counter = Counter()

    def settings_in_graphs(self) -> Hashable:
        """What a captured step holds as constants that the loop and the methods may change between its steps: the
        optimizer's learning rates and every layer's training mode."""
        return (tuple(group["lr"] for group in self.optimizer.param_groups),
                tuple(module.training for module in self.modules))

    def discard(self) -> None:
        """Drop every graph (and its static tensors): the step changed; each shape is warmed up and captured again."""
        self.batches.clear()

    def run(self, inputs: torch.Tensor, targets: torch.Tensor, tasks: Sequence[str]) -> Terms:
        key = batch_key(inputs, targets, tasks) if self.static else None
        if key is None:
            self.counts["eager"] += 1
            return self.step(inputs, targets, tasks)
        settings = self.settings_in_graphs()
        if settings != self.captured_with:
            self.discard()
            self.captured_with = settings
        batch = self.batches.get(key)
        if batch is None:
            batch = self.batches[key] = StaticBatch(torch.empty_like(inputs), torch.empty_like(targets), list(tasks))
        batch.inputs.copy_(inputs)
        batch.targets.copy_(targets)
        step = functools.partial(self.step, batch.inputs, batch.targets, batch.tasks)
        if self.graphs is None:
            self.counts["static"] += 1
            return step()
        if batch.replay is None:
            if not batch.warmed_up:
                batch.warmed_up = True
                self.counts["warm_up"] += 1
                return self.graphs.warm_up(step)
            batch.replay, batch.terms = self.graphs.capture(step)
            self.counts["captured"] += 1
            log.debug("captured the step for batches of shape %s", key)
        batch.replay()
        self.counts["replayed"] += 1
        return batch.terms
