"""``PackNet`` (Mallya & Lazebnik, CVPR 2018): after each task, prune by magnitude the weights it was free to change,
retrain the ones it kept, and hold them for it ever after; task ``k`` is evaluated with the weights of tasks 1..k.

``--agent_type packnet --agent_name PackNet`` on the dense ``Net`` or VGG16-BN. Every rule follows the authors' code
(``arunmallya/packnet``, commit de4ff7e; where it and the paper differ, the code), file and function named:

- **Owners** (``src/prune.py``, ``SparsePruner``; the masks of ``src/main.py``, ``init_dump``): each weight of the
  shared convolutions and linear layers (every layer but the heads) has an owner, 0 when free, else the number
  ``k`` (from 1, in training order) of the task that keeps it. Before task ``k`` trains, every free weight becomes
  its own (``make_finetuning_mask``), at the value it was left at: 0 for a weight pruned earlier (no fresh draw).
- **Steps** (``make_grads_zero``, ``make_pruned_zero``, called around ``optimizer.step()`` in ``src/main.py``,
  ``Manager.do_batch``): while task ``k`` trains, the gradient of every weight it does not own is zeroed before the
  step, and every weight it does not own is written back after the step to its value before the task (0 for a
  pruned one). Under plain SGD the write-back changes nothing and the step is the authors'; under momentum, weight
  decay or Adam, where a zero gradient can still move a weight, it keeps earlier tasks' weights bit-identical.
- **Pruning** (``pruning_mask``): after the task's epochs, per layer, among the ``n`` weights task ``k`` owns,
  ``cutoff`` = the ``round(f · n)``-th smallest ``|w|`` (``f`` = ``--prune_perc_per_layer``; ``round`` is Python 2's,
  half away from zero, on which the code ran: ``raw_input`` in ``src/networks.py``), and every one of them with
  ``|w| ≤ cutoff`` is freed and set to 0. With ``round(f · n) = 0`` nothing is pruned (the code's ``kthvalue(0)``
  fails). As published, ties at the cutoff are all pruned: a freed weight a later task leaves at 0 stays 0, so
  when they are more than ``f · n`` the cutoff is 0 and the task keeps only its non-zero weights (``units_added``
  reports what each task kept per layer).
- **Retraining** (``Manager.prune`` with ``--post_prune_epochs``; ``src/scripts/run_sequence.sh``): then
  ``--post_prune_epochs`` more epochs of the task, the pruned weights held at 0, with the optimizer's state
  started afresh (the code makes a new optimizer) at a tenth of ``--lr`` (the scripts train at 1e-3 and retrain at
  1e-4). They are epochs of the training loop (``task_epochs``): checkpointed, logged and resumed as the others.
- **Biases and BatchNorm** (``make_grads_zero`` with ``train_bias`` and ``train_bn`` off; ``train_nobn`` in
  ``src/networks.py``; ``src/scripts/run_all_sequence.sh``, tag ``nobias-nobn``): they train with the first task
  only (in the code, ImageNet's pruning trains them, ``run_imagenet_pruning.sh``); from the second task on they are
  not given to the optimizer and the BatchNorm layers run in eval mode, so their statistics stay too.
- **Evaluation** (``apply_mask``): task ``k`` through the weights owned by tasks 1..k, every other weight 0, and its
  own head (each task's head, as the code's classifier per dataset, trains with its task only).

Defaults: ``--prune_perc_per_layer 0.5`` (``src/main.py``'s default, and ``run_imagenet_pruning.sh``'s; the
sequence scripts prune each added task at 0.75) and ``--post_prune_epochs 10`` (every script in ``src/scripts``;
``src/main.py``'s own default 0 skips retraining). Its saved model is ``final_model.pth`` and ``packnet_owners.pth``
(``PackNet.STATE_FILE``).
"""
import math
from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Mapping, Optional, Tuple

import torch
from torch import nn

from agents.batchnorm import batchnorm_layers
from agents.default import LoopSettings
from agents.model_size import dense_size_mb
from agents.saved_state import SavedContinualState
from models import check_dense_model
from models.multihead import MultiHeadNet
from utils.errors import UserError
from utils.flags import at_least_zero, flag, inside_zero_one

RETRAINING_LR_FACTOR = 0.1
"""The retraining epochs' learning rate, as a fraction of ``--lr`` (the scripts: 1e-4 after 1e-3)."""
FREE = 0
"""The owner of a weight no task keeps."""


@dataclass
class PackNetSettings(LoopSettings):
    """PackNet's own flags (the authors' names and defaults)."""

    prune_perc_per_layer: float = flag(0.5, "fraction of each layer's weights a task trained that are pruned after it",
                                       valid=inside_zero_one, requirement="must lie in (0, 1)")
    post_prune_epochs: int = flag(10, "epochs of retraining after a task's pruning, at a tenth of --lr",
                                  valid=at_least_zero, requirement="must be 0 or more")


def prunable_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, layer)`` of each convolution and linear layer outside the heads (the code's ``model.shared``)."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear)) and not name.startswith("last.")]


def python2_round(value: float) -> int:
    """Round half away from zero (Python 2's ``round``) for ``value ≥ 0``."""
    return math.floor(value + 0.5)


def pruned_by_magnitude(weight: torch.Tensor, candidates: torch.Tensor, fraction: float) -> torch.Tensor:
    """The weights pruned among ``candidates`` (a boolean mask of ``weight``'s shape): with ``n`` candidates and
    ``cutoff`` the ``round(fraction · n)``-th smallest of their ``|w|``, those with ``|w| ≤ cutoff``; none when
    ``round(fraction · n) = 0`` (``src/prune.py``, ``pruning_mask``)."""
    magnitudes = weight.detach().abs()
    values = magnitudes[candidates]
    rank = python2_round(fraction * values.numel())
    if rank == 0:
        return torch.zeros_like(candidates)
    return candidates & (magnitudes <= values.kthvalue(rank).values)


def owner_bits(tasks: int) -> int:
    """Bits of one owner among ``tasks`` tasks and "free": ``⌈log2(tasks + 1)⌉``."""
    return tasks.bit_length()


class PackNet(SavedContinualState):
    """PackNet: iterative pruning, each weight owned by the task that kept it (see the module docstring).

    Continual-learning state: ``owners`` {weight name: owner of each weight}, ``task_numbers`` {task: k, from 1}
    and ``kept`` {task index: weights it kept per prunable layer}.
    """

    Settings = PackNetSettings
    STATE_FILE = "packnet_owners.pth"

    def __init__(self, model: MultiHeadNet, settings: PackNetSettings):
        super().__init__(model, settings)
        self.layers = prunable_layers(self.model)
        if not self.layers:
            raise UserError("PackNet prunes the weights of dense convolutions: the model has none")
        self.owners = {name: torch.full_like(layer.weight, FREE, dtype=torch.int16) for name, layer in self.layers}
        self.task_numbers: Dict[str, int] = {}
        self.kept: Dict[int, List[int]] = {}
        self.trainable: Optional[List[torch.Tensor]] = None
        """While a task trains: for each prunable layer, the weights it owns."""
        self.held: List[torch.Tensor] = []
        """While a task trains: each prunable layer's weights as they are to stay where it does not own them."""

    @classmethod
    def check_model(cls, model_type: str, model_name: str) -> None:
        check_dense_model(model_type, model_name, "PackNet")

    # --- training -------------------------------------------------------------------------------------------
    def freeze(self, task: str) -> None:
        """Number a new task and give it every free weight (``make_finetuning_mask``); then hold what it does not
        own."""
        if task not in self.task_numbers:
            number = len(self.task_numbers) + 1
            self.task_numbers[task] = number
            for owners in self.owners.values():
                owners.masked_fill_(owners == FREE, number)
        self.hold(task)

    def hold(self, task: str) -> None:
        """From now on in ``task``, a step changes only the weights it owns; the others stay as they are now."""
        number = self.task_numbers[task]
        self.trainable = [self.owners[name] == number for name, _ in self.layers]
        self.held = [layer.weight.detach().clone() for _, layer in self.layers]

    def trainable_parameters(self, task: str) -> List[nn.Parameter]:
        """Every parameter for the first task; from the second on, the prunable weights and the task's head (the
        biases and BatchNorm stay the first task's)."""
        parameters = super().trainable_parameters(task)
        if self.task_numbers[task] == 1:
            return parameters
        weights = {id(layer.weight) for _, layer in self.layers}
        heads = {id(p) for head in self.training_heads for p in self.model.last[head].parameters()}
        return [p for p in parameters if id(p) in weights or id(p) in heads]

    def task_epochs(self) -> int:
        """The schedule's epochs, then ``--post_prune_epochs`` of retraining."""
        return super().task_epochs() + self.settings.post_prune_epochs

    def begin_epoch(self, task: str, epoch: int) -> None:
        """BatchNorm in eval mode after the first task (``train_nobn``); prune before the first retraining epoch."""
        if self.task_numbers[task] > 1:
            for layer in batchnorm_layers(self.model):
                layer.eval()
        if epoch == self.settings.schedule[-1]:
            self.prune(task)
            self.optimizer.state.clear()
            for group in self.optimizer.param_groups:
                group["lr"] = RETRAINING_LR_FACTOR * self.settings.lr
            self.step_changed()  # new masks and optimizer state

    def backward(self, terms: Dict[str, torch.Tensor]) -> None:
        """The loss's gradients, zero for every weight the task does not own (``make_grads_zero``)."""
        super().backward(terms)
        for (_, layer), trainable in zip(self.layers, self.trainable):
            if layer.weight.grad is not None:
                layer.weight.grad.masked_fill_(~trainable, 0)

    @torch.no_grad()
    def after_step(self) -> None:
        """Write back every weight the task does not own (``make_pruned_zero``, for every optimizer)."""
        for (_, layer), trainable, held in zip(self.layers, self.trainable, self.held):
            layer.weight.copy_(torch.where(trainable, layer.weight, held))

    def end_task(self, task: str) -> None:
        """Prune, when no retraining epoch did; then the task holds nothing any more."""
        if self.task_numbers[task] - 1 not in self.kept:
            self.prune(task)
        self.trainable, self.held = None, []

    @torch.no_grad()
    def prune(self, task: str) -> None:
        """Free and zero, in each prunable layer, the weights ``pruned_by_magnitude`` picks among the task's; record
        what it kept, and hold the freed weights at 0 from now on."""
        number = self.task_numbers[task]
        kept = []
        for name, layer in self.layers:
            owners = self.owners[name]
            pruned = pruned_by_magnitude(layer.weight, owners == number, self.settings.prune_perc_per_layer)
            owners.masked_fill_(pruned, FREE)
            layer.weight.masked_fill_(pruned, 0)
            kept.append(int((owners == number).sum()))
        self.kept[number - 1] = kept
        self.hold(task)

    # --- evaluation -----------------------------------------------------------------------------------------
    def task_number(self, task: str) -> int:
        """A trained task's number; a task never trained on its own (``--offline_training``) uses every task's
        weights."""
        return self.task_numbers.get(task, len(self.task_numbers))

    def trunk_key(self, task: str) -> Hashable:
        """Each task's own: its network holds the weights of tasks 1..k only (``task_network``)."""
        return task

    @torch.no_grad()
    def task_network(self, task: str) -> nn.Sequential:
        """``NormalNN.task_network`` with each prunable weight not owned by tasks 1..k set to 0 (``apply_mask``)."""
        network = super().task_network(task)
        copies = [module for module in network.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
        number = self.task_number(task)
        for (name, _), copy in zip(self.layers, copies[:len(self.layers)]):
            owners = self.owners[name]
            copy.weight.masked_fill_((owners == FREE) | (owners > number), 0)
        return network

    # --- state ----------------------------------------------------------------------------------------------
    def continual_state(self) -> Dict[str, Any]:
        return {"owners": self.owners, "task_numbers": self.task_numbers, "kept": self.kept}

    def load_continual_state(self, state: Mapping[str, Any]) -> None:
        """The owners, task numbers and kept weights (a checkpoint's or a saved model's), checked against the
        model's layers."""
        owners = {name: tensor.to(self.device) for name, tensor in state["owners"].items()}
        expected = {name: tuple(layer.weight.shape) for name, layer in self.layers}
        if {name: tuple(tensor.shape) for name, tensor in owners.items()} != expected:
            raise UserError("the saved PackNet owners do not fit this model's layers")
        self.owners = owners
        self.task_numbers = {str(task): int(number) for task, number in state["task_numbers"].items()}
        self.kept = {int(index): list(kept) for index, kept in state["kept"].items()}

    # --- outputs --------------------------------------------------------------------------------------------
    def units_added(self) -> Dict[int, List[int]]:
        """The weights each task kept in each prunable layer."""
        return self.kept

    def results_keys(self) -> Dict[str, Any]:
        """``prunable_weights``: the weights of each prunable layer (what ``channels`` are kept of)."""
        return {"prunable_weights": [layer.weight.numel() for _, layer in self.layers]}

    def model_size_mb(self) -> float:
        """``[4 B × parameters + prunable weights × ⌈log2(tasks + 1)⌉ / 8 B] / 1e6``: the float32 parameters
        (CACL's convention) and an owner for each prunable weight at the bits the tasks so far need
        (``owner_bits``)."""
        weights = sum(layer.weight.numel() for _, layer in self.layers)
        owners_bytes = weights * owner_bits(len(self.task_numbers)) / 8
        return dense_size_mb(sum(p.numel() for p in self.model.parameters())) + owners_bytes / 1e6
