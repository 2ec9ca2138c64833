"""``NormalNN``: fine-tuning, and the loop every method shares (one task after another, multi-head loss, per-task
evaluation); ``LoopSettings``: the training flags every method reads."""
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from agents.batchnorm import batchnorm_statistics, checked_statistics, use_batchnorm_statistics
from agents.loss_watch import LossWatch
from agents.model_size import dense_feature_parameters, dense_size_mb
from agents.optim import check_optimizer, make_optimizer, set_capturable
from agents.step import CompiledStep, CudaGraphs, TrainingStep, capture_obstacle, compiled
from models.deployable import plain_head, task_network
from models.multihead import ALL_TASKS, MultiHeadNet
from utils.errors import UserError
from utils.files import atomic_torch_save
from utils.flags import at_least_zero, flag, format_values, from_flags, positive

log = logging.getLogger(__name__)

MODEL_FILE = "final_model.pth"
"""The model's state dict in a saved model's folder (``saves/<exp>/``), as published."""


SCHEDULE_REQUIREMENT = "must be increasing positive epochs"


@dataclass
class LoopSettings:
    """The flags every method's training loop reads (the published names and defaults), and where it runs."""

    lr: float = flag(0.001, "learning rate", valid=positive, requirement="must be a positive number")
    momentum: float = flag(0.9, "momentum of SGD and RMSprop")
    weight_decay: float = flag(0.0, "weight decay", valid=at_least_zero, requirement="must be 0 or more")
    optimizer: str = flag("Adam", "a torch.optim optimizer, or amsgrad")
    schedule: List[int] = flag([2], "epochs at which the lr drops 10x; the last ends a task", nargs="+")
    print_freq: int = flag(100, "log the losses every this many steps", valid=positive,
                           requirement="must be positive")
    save_running_stats: bool = flag(False, "BatchNorm statistics per task (models with BatchNorm)")
    amp: bool = flag(False, "bfloat16 autocast of the forward pass (for CUDA; changes the numbers)")
    compile: bool = flag(False, "torch.compile the whole training step (GEM's and HAT's forward pass), a graph per "
                                "task and batch shape (for CUDA)")
    cuda_graph: bool = flag(False, "capture the training step as a CUDA graph, once per task and batch shape, and "
                                   "replay it (for CUDA; awaits the GPU check: README, Speed)",
                            negative="--no_cuda_graph")
    device: str = "cpu"
    channels_last: bool = False
    """Inputs and kernels in channels-last (NHWC) memory format (the driver's choice on the CPU)."""

    def __post_init__(self):
        schedule = list(self.schedule)
        if not schedule or schedule[0] <= 0 or any(b <= a for a, b in zip(schedule, schedule[1:])):
            raise UserError(f"--schedule {SCHEDULE_REQUIREMENT}, got {format_values(schedule)}")
        check_optimizer(self.optimizer, self.momentum, self.weight_decay)
        if self.cuda_graph and self.compile:
            raise UserError("--cuda_graph and --compile: choose one (a compiled step is not captured)")


@dataclass
class NormalNNSettings(LoopSettings):
    """The GT-RIPL baselines' flag: fine-tuning reads none of it, but names its experiments by it as they do."""

    reg_coef: float = flag(0.0, "weight of a baseline's penalty (GEM: the margin of its constraints)", sweep=True,
                           valid=at_least_zero,
                           requirement="must be 0 or more (a negative weight rewards what the loss penalises)")


@dataclass
class EpochReport:
    """What one epoch of ``learn_task`` measured: the loss terms every ``print_freq`` steps."""

    task: str
    epoch: int
    """Epochs of the task done, this one included."""
    losses: List[Tuple[int, Dict[str, float]]] = field(default_factory=list)
    """``(global step, {term: value})``."""


def task_groups(tasks: Sequence[str]) -> List[Tuple[str, Optional[torch.Tensor]]]:
    """``(task, indices)`` for each task present in a batch; ``indices`` is None when the batch is one task."""
    if len(set(tasks)) == 1:
        return [(tasks[0], None)]
    groups: Dict[str, List[int]] = defaultdict(list)
    for index, task in enumerate(tasks):
        groups[task].append(index)
    return [(task, torch.tensor(indices)) for task, indices in groups.items()]


def to_device(indices: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """CPU ``indices`` on the device of ``like``, copied without making the CPU wait for the device."""
    return indices.to(like.device, non_blocking=True)


class NormalNN:
    """Fine-tuning, and the continual-learning loop every method shares: one task after another, a multi-head
    loss, each task evaluated through its own network.

    A method is a subclass in a module of its own that declares its ``Settings`` (a subclass of
    :class:`LoopSettings` whose fields are its flags, ``utils.flags.flag``; a flag with ``sweep=True`` makes one
    experiment per value) and overrides what differs:

    - its model: ``method_model`` (the network it trains, made from the flags' model; e.g. progressive networks'
      columns), ``dense_feature_parameters`` (one dense model's, for the results' ``dense_models_size``);
    - training: ``freeze`` / ``trainable_parameters`` (what may change while a task trains), ``regularization``
      (terms added to the cross-entropy), ``backward`` (the gradients a step takes), ``after_step`` (after every
      optimizer step), ``task_epochs`` / ``begin_epoch`` (how many epochs a task trains, and what happens before
      each), ``end_task`` (after the last epoch) and ``consolidate`` (what is kept of a task for later); and,
      for ``--cuda_graph``, ``capture_obstacle`` (why its step cannot be captured) or ``step_changed`` (its step
      replaced a tensor it reads);
    - its state: ``continual_state`` / ``load_continual_state`` (what the later tasks and evaluation need besides
      the model's tensors; checkpointed with it), ``save`` / ``load_saved`` (its files in ``saves/<exp>/``);
    - its outputs: ``task_ranks`` (the components a task is evaluated with), ``trunk_key`` (which tasks' networks
      differ only in their heads: a method whose ``task_network`` differs between tasks otherwise, by gates, masks
      or columns, gives each task its own key), ``units_added`` (what each task added to each layer: the results'
      ``channels``), ``results_keys`` (more keys of the results record) and ``model_size_mb``; ``title``, its name
      in the papers (the report's figures call it so);
    - ``check_model`` (a model it cannot run on is a one-line error before anything is read), ``make_settings``
      (its settings from the flags), ``prunes_after_task`` and ``pruned_copy`` (the ``--debug`` searches).
    """

    Settings = NormalNNSettings
    title = "fine-tuning"
    """The method's name in the papers, where it is not its class's name (``method_title``)."""
    abstract = False
    """True for a base class of methods that is no method itself (not offered by ``--agent_name``)."""
    prunes_after_task = False
    """Whether the method prunes what a task added once it is learnt (``pruned_copy``; the ``--debug`` searches)."""
    capture_obstacle = ""
    """Why the method's training step cannot be captured as a CUDA graph (``--cuda_graph``, ``agents.step``), in the
    words of the notice that says so (``"<Method>'s step <obstacle>"``); empty when it can: its step (``observe``
    and every hook it calls) reads no device value on the host, takes every number that changes from step to step
    from tensors, and replaces no tensor it reads within a task without calling ``step_changed``."""

    def __init__(self, model: MultiHeadNet, settings: LoopSettings):
        self.settings = settings
        self.device = torch.device(settings.device)
        self.memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.training_features = self.model.features
        self.tasks_trained: List[str] = []
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler = None
        self.global_step = 0
        self.training_heads: List[str] = []
        self.valid_out_dim: Optional[int] = None
        self.running_stats: Dict[str, List[Dict[str, torch.Tensor]]] = {}
        self.current_task: Optional[str] = None
        self.epochs_done = 0
        self.resume_point: Optional[dict] = None
        self.static_step = settings.cuda_graph and not capture_obstacle(type(self), settings.optimizer)
        """Whether the step runs on static tensors (``--cuda_graph``, for a method and optimizer that can be
        captured): captured and replayed on CUDA, run eagerly elsewhere."""
        self.captures = self.static_step and self.device.type == "cuda"
        """Whether the step is captured as a CUDA graph (and the optimizer made ``capturable``)."""
        self.compiles_step = settings.compile and not self.capture_obstacle
        """``--compile`` of the whole step (``agents.step.CompiledStep``): for a method whose step could be captured
        (its numbers that change from step to step are tensors, not guards that fail every step); another method
        has its forward pass compiled."""
        if settings.compile and not self.compiles_step:
            log.info("--compile: %s's step %s: its forward pass is compiled, not its whole step",
                     type(self).__name__, self.capture_obstacle)
        self.loss_watch = LossWatch()
        self.training_step: Optional[TrainingStep] = None
        """The current task's step, run eagerly or replayed (``agents.step``; made by ``begin_task``)."""
        self.task_seconds: Dict[str, float] = {}
        """Wall-clock seconds each task took to learn (its epochs, ``end_task`` and ``consolidate``)."""
        self.task_started = 0.0
        """``time.perf_counter()`` when the current task began (earlier by the seconds it ran before a resume)."""
        self.task_images: Dict[str, int] = {}
        """Training images each task's steps took, over all its epochs (``images_per_second``)."""
        self.images_in_task: Optional[int] = 0
        """Training images the current task's steps have taken so far, before a resume too (None: unknown, a
        checkpoint written before they were counted)."""

    @classmethod
    def method_title(cls) -> str:
        """The method's name in the papers: ``title`` where its own class sets one (not inherited), else the class's
        name."""
        return vars(cls).get("title", cls.__name__)

    @classmethod
    def check_model(cls, model_type: str, model_name: str) -> None:
        """A one-line error when the method cannot run on ``models.<model_type>.<model_name>`` (fine-tuning runs on
        any)."""

    @classmethod
    def method_model(cls, model: MultiHeadNet, settings: LoopSettings,
                     state: Optional[Mapping[str, torch.Tensor]] = None) -> MultiHeadNet:
        """The network the method trains, made from the flags' ``model`` (with its heads) before any saved tensors
        are loaded into it; shaped as ``state`` (a checkpoint's or a saved model's tensors, when given) holds them,
        for a method whose network grows as it learns. Fine-tuning trains ``model`` itself."""
        return model

    @classmethod
    def make_settings(cls, flags: Mapping[str, Any], swept: Mapping[str, Any], device: torch.device) -> LoopSettings:
        """The method's ``Settings`` from the parsed flags (``swept``: the experiment's own value of the swept flag),
        on ``device`` (channels-last on the CPU)."""
        return from_flags(cls.Settings, flags, swept, device=str(device), channels_last=device.type == "cpu")

    def head_of(self, task: str) -> str:
        """A task's head: its own, or the shared ``All`` head of ``--force_out_dim``."""
        return task if task in self.model.last else ALL_TASKS

    # --- training -------------------------------------------------------------------------------------------
    def set_valid_output_dim(self, n_classes: int) -> None:
        """``--incremental_class``: only the shared head's first ``n_classes`` outputs (the classes seen so far)."""
        self.valid_out_dim = n_classes

    def head_logits(self, features: torch.Tensor, task: str) -> torch.Tensor:
        return self.valid_logits(self.model.last[self.head_of(task)](features), task)

    def valid_logits(self, logits: torch.Tensor, task: str) -> torch.Tensor:
        """The outputs of ``task``'s head that count: all, or the first ``valid_out_dim`` of the shared head."""
        if self.head_of(task) == ALL_TASKS and self.valid_out_dim is not None:
            return logits[:, :self.valid_out_dim]
        return logits

    def freeze(self, task: str) -> None:
        """Before ``task`` trains: hold fixed what it may not change (fine-tuning holds nothing)."""

    def trainable_parameters(self, task: str) -> List[nn.Parameter]:
        """The parameters the optimizer may change while ``task`` trains: the feature extractor and the heads being
        trained (other tasks' heads are left alone)."""
        body = [p for name, p in self.model.named_parameters() if not name.startswith("last.")]
        return body + [p for head in self.training_heads for p in self.model.last[head].parameters()]

    def begin_task(self, task: str) -> None:
        settings = self.settings
        self.freeze(task)
        self.optimizer = make_optimizer(self.trainable_parameters(task), settings.optimizer, settings.lr,
                                        settings.momentum, settings.weight_decay, capturable=self.captures)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=list(settings.schedule),
                                                              gamma=0.1)
        if settings.compile and not self.compiles_step:
            self.training_features = compiled(self.model.features)
        self.loss_watch = LossWatch()
        step = CompiledStep(self.watched_step) if self.compiles_step else self.watched_step
        self.training_step = TrainingStep(step, self.optimizer, self.model, self.static_step,
                                          CudaGraphs(self.device) if self.captures else None)

    def step_changed(self) -> None:
        """For a method that, within a task, replaces a tensor its step reads (rather than changing it in place) or
        the optimizer's state: a captured step (``--cuda_graph``) is captured afresh from the next batch on."""
        if self.training_step is not None:
            self.training_step.discard()

    def autocast(self) -> torch.autocast:
        """``--amp``: the model's forward pass in bfloat16 (the regularizers stay in float32); without autocast's
        cache of cast weights when the step is captured (PyTorch's rule for autocast in CUDA graphs; the values are
        the same)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.amp,
                              cache_enabled=not self.captures)

    def learn_task(self, task: str, train_loader, heads: Optional[Sequence[str]] = None,
                   on_epoch: Optional[Callable[[EpochReport], None]] = None) -> None:
        """Train on one task for ``schedule[-1]`` epochs, then run ``end_task``.

        ``heads`` are the heads that train (default: the task's own); joint training passes every task's.
        ``on_epoch(report)`` is called after every epoch, when ``training_state`` can be saved to continue from there.
        After ``load_training_state`` of a state saved during this task, training continues from the epoch it reached.
        The seconds it took go to ``task_seconds``, the images its steps took to ``task_images``. A NaN or infinite
        loss stops it with a ``UserError`` naming the step (``LossWatch``: checked every ``print_freq`` steps and at
        the end of each epoch, before ``on_epoch``).
        """
        resume, self.resume_point = self.resume_point, None
        if resume is not None and resume["task"] != task:
            raise RuntimeError(f"the saved state is in the middle of task {resume['task']}, not task {task}")
        self.training_heads = list(resume["heads"] if resume is not None
                                   else heads if heads is not None else [self.head_of(task)])
        self.begin_task(task)
        self.current_task, self.epochs_done, self.images_in_task = task, 0, 0
        self.task_started = time.perf_counter()
        if resume is not None:
            self.optimizer.load_state_dict(resume["optimizer"])
            set_capturable(self.optimizer, self.captures)
            self.scheduler.load_state_dict(resume["scheduler"])
            self.epochs_done = resume["epochs_done"]
            self.task_started -= resume["seconds"]
            self.images_in_task = resume.get("images")
        epochs = self.task_epochs()
        watch = self.loss_watch  # NaN and infinity are caught on the device: no step waits for the GPU
        for epoch in tqdm(range(self.epochs_done, epochs), desc=f"task {task}", unit="epoch", disable=None,
                          leave=False):
            report = EpochReport(task, epoch + 1)
            watch.begin_epoch()
            self.model.train()
            self.begin_epoch(task, epoch)
            for inputs, targets, tasks in train_loader:
                self.training_step.run(inputs, targets, tasks)
                self.global_step += 1
                if self.images_in_task is not None:
                    self.images_in_task += len(targets)
                if self.global_step % self.settings.print_freq == 0:
                    report.losses.append((self.global_step, watch.check(task, epoch)))
            watch.check(task, epoch)
            self.scheduler.step()
            self.epochs_done = epoch + 1
            if on_epoch is not None:
                on_epoch(report)
        self.current_task = None
        self.end_task(task)
        self.consolidate(task, train_loader)
        self.task_seconds[task] = time.perf_counter() - self.task_started
        if self.images_in_task is not None:
            self.task_images[task] = self.images_in_task
            log.info("task %s learnt in %.1f s: %d training images, %.0f images/s", task, self.task_seconds[task],
                     self.images_in_task, self.images_per_second().get(task, 0.0))
        self.tasks_trained.append(task)
        if self.settings.save_running_stats:
            self.running_stats[task] = batchnorm_statistics(self.model)

    def images_per_second(self) -> Dict[str, float]:
        """Each learnt task's training images per second: ``task_images / task_seconds``, the images its steps took
        over every epoch by the wall-clock seconds it took to learn (``end_task`` and ``consolidate`` included)."""
        return {task: self.task_images[task] / seconds for task, seconds in self.task_seconds.items()
                if task in self.task_images and seconds > 0}

    def task_epochs(self) -> int:
        """The epochs ``learn_task`` trains a task: the last of ``--schedule`` (a method may add some after them)."""
        return self.settings.schedule[-1]

    def begin_epoch(self, task: str, epoch: int) -> None:
        """Before the first step of epoch ``epoch`` (from 0) of ``task``, the model in training mode; also before the
        epoch a resumed task continues with (nothing for fine-tuning)."""

    def training_state(self) -> dict:
        """Everything needed to continue training exactly from here: between tasks, or between two epochs of a
        task (then with the optimizer's and the scheduler's state); the method's ``continual_state`` included.
        Random generators are the caller's."""
        state = {"model": self.model.state_dict(), "tasks_trained": list(self.tasks_trained),
                 "global_step": self.global_step, "valid_out_dim": self.valid_out_dim,
                 "running_stats": self.running_stats, "task_seconds": dict(self.task_seconds),
                 "task_images": dict(self.task_images), "in_task": None, **self.continual_state()}
        if self.current_task is not None:
            state["in_task"] = {"task": self.current_task, "heads": list(self.training_heads),
                                "epochs_done": self.epochs_done, "optimizer": self.optimizer.state_dict(),
                                "scheduler": self.scheduler.state_dict(),
                                "seconds": time.perf_counter() - self.task_started,
                                "images": self.images_in_task}
        return state

    def load_training_state(self, state: dict) -> None:
        """The inverse of ``training_state``, into an agent whose model has the saved state's shapes; a state saved
        during a task is continued by the next ``learn_task`` of that task."""
        self.model.load_state_dict(state["model"])
        self.tasks_trained = list(state["tasks_trained"])
        self.global_step = state["global_step"]
        self.valid_out_dim = state["valid_out_dim"]
        self.task_seconds = dict(state["task_seconds"])
        self.task_images = dict(state.get("task_images", {}))
        self.load_running_stats(state["running_stats"], "the checkpoint")
        self.resume_point = state["in_task"]
        self.load_continual_state(state)

    def continual_state(self) -> Dict[str, Any]:
        """What the method keeps of the tasks learnt, besides the model's tensors, for the later tasks and for
        evaluation (fine-tuning keeps nothing); names of its entries must not clash with ``training_state``'s."""
        return {}

    def load_continual_state(self, state: Mapping[str, Any]) -> None:
        """The inverse of ``continual_state`` (``state`` may hold more entries)."""

    def watched_step(self, inputs: torch.Tensor, targets: torch.Tensor,
                     tasks: Sequence[str]) -> Dict[str, torch.Tensor]:
        """The loop's one step function, run eagerly or replayed (``training_step``): ``observe``, and the NaN
        watch's record of its loss terms (``loss_watch``); returns the terms."""
        terms = self.observe(inputs, targets, tasks)
        self.loss_watch.step(terms)
        return terms

    def observe(self, inputs: torch.Tensor, targets: torch.Tensor, tasks: Sequence[str]) -> Dict[str, torch.Tensor]:
        """One optimizer step on a batch; returns the loss terms (detached)."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            terms = {"ce": self.classification_loss(inputs, targets, tasks)}
        terms.update(self.regularization())
        terms["loss"] = sum(terms.values())
        self.backward(terms)
        self.optimizer.step()
        self.after_step()
        return {name: value.detach() for name, value in terms.items()}

    def backward(self, terms: Dict[str, torch.Tensor]) -> None:
        """The gradients the optimizer steps with: those of the whole loss ``terms["loss"]``."""
        terms["loss"].backward()

    def task_logits(self, features: torch.Tensor,
                    tasks: Sequence[str]) -> Iterator[Tuple[Optional[torch.Tensor], torch.Tensor]]:
        """``(indices, logits)`` for each task present in a batch: its samples' features (``indices`` None: the
        whole batch) through that task's head."""
        for task, indices in task_groups(tasks):
            head_features = features if indices is None else features[to_device(indices, features)]
            yield indices, self.head_logits(head_features, task)

    def classification_loss(self, inputs: torch.Tensor, targets: torch.Tensor, tasks: Sequence[str]) -> torch.Tensor:
        """Multi-head cross-entropy: each head's summed over its samples, all divided by the batch size."""
        features = self.training_features(inputs.contiguous(memory_format=self.memory_format))
        loss = features.new_zeros((), dtype=torch.float32)
        for indices, logits in self.task_logits(features, tasks):
            head_targets = targets if indices is None else targets[to_device(indices, targets)]
            loss = loss + F.cross_entropy(logits, head_targets, reduction="sum")
        return loss / len(targets)

    def regularization(self) -> Dict[str, torch.Tensor]:
        return {}

    def after_step(self) -> None:
        pass

    def end_task(self, task: str) -> None:
        pass

    def consolidate(self, task: str, train_loader) -> None:
        """After ``end_task``: what the method keeps of ``task`` for the later ones, from the data it trained on."""

    # --- evaluation -----------------------------------------------------------------------------------------
    def task_ranks(self, task: str) -> Optional[List[int]]:
        """How many components of each SVD layer ``task``'s network uses (None: the whole model)."""
        return None

    def load_running_stats(self, statistics: Dict[str, List[Dict[str, torch.Tensor]]], source: str) -> None:
        """Saved per-task BatchNorm statistics (``--save_running_stats``), checked against this model's layers."""
        self.running_stats = checked_statistics(self.model, statistics, source, self.device)

    def task_network(self, task: str) -> nn.Sequential:
        """``task``'s own network as plain layers (``models.deployable.task_network``): its components
        (``task_ranks``), its head and (with ``--save_running_stats``) its BatchNorm statistics folded in; on the
        agent's device and memory format."""
        live_statistics = batchnorm_statistics(self.model) if task in self.running_stats else None
        if live_statistics is not None:
            use_batchnorm_statistics(self.model, self.running_stats[task])
        try:
            network = task_network(self.model.feature_layers(), self.task_ranks(task),
                                   self.model.last[self.head_of(task)])
        finally:
            if live_statistics is not None:
                use_batchnorm_statistics(self.model, live_statistics)
        return network.to(memory_format=self.memory_format)

    def network_logits(self, network: nn.Module, task: str, inputs: torch.Tensor) -> torch.Tensor:
        """The logits of ``task`` that count, from its ``task_network`` (under ``--amp``'s autocast)."""
        with self.autocast():
            return self.valid_logits(network(inputs.contiguous(memory_format=self.memory_format)), task)

    def trunk_key(self, task: str) -> Hashable:
        """What ``task``'s network before its head (``task_network(task)[:-1]``) is made of besides the shared model:
        the networks of tasks of one key hold the same layers there, bit for bit, and differ only in their heads, so
        ``task_outputs`` runs those layers once for all of them. Here: the components the task uses (``task_ranks``)
        and its own BatchNorm statistics, if it has any (fine-tuning and the baselines: one trunk for every task;
        CACL: one per prefix of components). A method whose ``task_network`` differs between tasks otherwise
        (gates, masks, columns) returns the task itself."""
        ranks = self.task_ranks(task)
        return None if ranks is None else tuple(ranks), task if task in self.running_stats else None

    @torch.no_grad()
    def task_outputs(self, tasks: Sequence[str]) -> Callable[[torch.Tensor], List[torch.Tensor]]:
        """For evaluation without the task label: a function giving, for a batch of inputs, the logits that count of
        each of ``tasks`` (in that order), each as ``network_logits`` of its ``task_network`` gives them. The
        networks are built here, once; the tasks of one ``trunk_key`` share one pass of the layers before their
        heads, then each applies its own head, so a method with one trunk and a head per task runs its trunk once
        per batch, not once per task."""
        groups: Dict[Hashable, List[str]] = {}
        for task in tasks:
            groups.setdefault(self.trunk_key(task), []).append(task)
        passes: List[Tuple[nn.Module, Dict[str, nn.Module]]] = []
        for members in groups.values():
            network = self.task_network(members[0])
            if len(members) == 1:
                passes.append((network, {members[0]: nn.Identity()}))
            else:
                passes.append((network[:-1], {task: plain_head(self.model.last[self.head_of(task)])
                                              for task in members}))

        @torch.no_grad()
        def outputs(inputs: torch.Tensor) -> List[torch.Tensor]:
            inputs = inputs.contiguous(memory_format=self.memory_format)
            logits: Dict[str, torch.Tensor] = {}
            with self.autocast():
                for front, heads in passes:
                    features = front(inputs)
                    for task, head in heads.items():
                        logits[task] = self.valid_logits(head(features), task)
            return [logits[task] for task in tasks]

        return outputs

    @torch.no_grad()
    def evaluate(self, loader) -> float:
        """Accuracy (%) over a loader, each sample through its own task's ``task_network`` (built once per task and
        call: every layer in its cheaper form, with the task's own head and BatchNorm statistics)."""
        networks: Dict[str, nn.Module] = {}
        correct, seen = 0, 0
        for inputs, targets, tasks in loader:
            for task, indices in task_groups(tasks):
                task_inputs = inputs if indices is None else inputs[to_device(indices, inputs)]
                task_targets = targets if indices is None else targets[to_device(indices, targets)]
                if task not in networks:
                    networks[task] = self.task_network(task)
                logits = self.network_logits(networks[task], task, task_inputs)
                correct = correct + (logits.argmax(1) == task_targets).sum()  # on the device: read once, below
                seen += len(task_targets)
        if seen == 0:
            raise UserError("the evaluation set is empty")
        return 100.0 * int(correct) / seen

    # --- outputs ------------------------------------------------------------------------------------------
    def units_added(self) -> Dict[int, List[int]]:
        """What each task added to each layer, by task index in training order (the results' ``channels``; nothing
        for a method that adds nothing per task)."""
        return {}

    def results_keys(self) -> Dict[str, Any]:
        """Keys the method adds to each run's results record."""
        return {}

    def model_size_mb(self) -> float:
        return dense_size_mb(sum(p.numel() for p in self.model.parameters()))

    def dense_feature_parameters(self) -> int:
        """Parameters of one dense model of the flags' network, heads aside (``agents.model_size``): what each of
        the separate models of ``dense_models_size`` holds."""
        return dense_feature_parameters(self.model)

    def pruned_copy(self, task: str, strength: float) -> "NormalNN":
        """A copy in which ``task``, trained but not yet pruned, is pruned at ``strength`` (``prunes_after_task``
        methods)."""
        raise UserError(f"{type(self).__name__} does not prune after a task")

    # --- saved models -------------------------------------------------------------------------------------
    def save(self, directory: str) -> None:
        """The trained model into ``directory``: ``final_model.pth`` (the model's state dict), as published."""
        atomic_torch_save(self.model.state_dict(), os.path.join(directory, MODEL_FILE))

    def load_saved(self, directory: str) -> None:
        """The rest of what ``save`` wrote (the model's tensors are loaded already): the tasks trained, in order,
        and what evaluating them needs."""
        raise UserError(f"--loadmodel {directory}: {type(self).__name__} saves only {MODEL_FILE}, without the order "
                        f"of its tasks: it cannot be evaluated from its saved files")
