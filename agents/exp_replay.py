"""The rehearsal baselines of the GT-RIPL benchmark: a small memory of earlier tasks' samples, replayed with each new
task's data (``Naive_Rehearsal``, alone or with a regularization penalty) or used to constrain each step (``GEM``).

``--agent_type exp_replay --agent_name Naive_Rehearsal|Naive_Rehearsal_SI|Naive_Rehearsal_L2|Naive_Rehearsal_EWC|
Naive_Rehearsal_MAS|GEM``, with ``--memory_size`` (default 1000, as published).
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from agents.default import NormalNN, NormalNNSettings, task_groups, to_device
from agents.regularization import EWC, L2, MAS, SI
from models.multihead import MultiHeadNet
from utils.errors import UserError
from utils.flags import flag, positive

Slot = dict
"""One task's samples in the memory: ``{"inputs": network inputs, "targets": labels, "tasks": task name of each}``."""

GEM_RIDGE = 1e-3
"""ε added to the diagonal of GEM's quadratic program for numerical stability (as published and in GEM's code)."""


@dataclass
class RehearsalSettings(NormalNNSettings):
    """The rehearsal agents' flag; ``--reg_coef`` is the penalty of the ``Naive_Rehearsal_<method>`` variants and
    the margin of GEM's constraints."""

    memory_size: int = flag(1000, "samples the rehearsal agents keep", valid=positive, requirement="must be positive")


class EpisodicMemory(NormalNN):
    """A memory of ``memory_size`` samples, one slot per task learnt.

    After each task every slot keeps its first ``memory_size // tasks seen`` samples and the new slot holds a random
    draw of that many of the task's samples (all of them if it has fewer), stored as the network inputs the loader
    made of them (transformed once, as published).
    """

    Settings = RehearsalSettings
    abstract = True

    def __init__(self, model: MultiHeadNet, settings: RehearsalSettings):
        super().__init__(model, settings)
        self.memory: Dict[int, Slot] = {}
        """Slots by the number of tasks seen when they were filled (1, 2, ...)."""

    def remember(self, train_loader) -> None:
        """Make room in the memory and fill a new slot from the task just learnt (``train_loader``'s samples)."""
        tasks_seen = len(self.memory) + 1
        per_slot = min(train_loader.num_samples, self.settings.memory_size // tasks_seen)
        for slot in self.memory.values():
            slot.update(inputs=slot["inputs"][:per_slot], targets=slot["targets"][:per_slot],
                        tasks=slot["tasks"][:per_slot])
        inputs, targets, tasks = train_loader.samples(torch.randperm(train_loader.num_samples)[:per_slot])
        self.memory[tasks_seen] = {"inputs": inputs.to(self.device), "targets": targets.to(self.device),
                                   "tasks": list(tasks)}

    def stored_samples(self) -> List[Tuple[str, torch.Tensor, torch.Tensor]]:
        """The memory as ``(task name, inputs, targets)``, one entry per task present in each slot (none for an empty
        slot: ``memory_size`` smaller than the number of tasks)."""
        stored = []
        for slot in self.memory.values():
            for task, indices in task_groups(slot["tasks"]):
                inputs, targets = slot["inputs"], slot["targets"]
                if indices is not None:
                    inputs, targets = inputs[to_device(indices, inputs)], targets[to_device(indices, targets)]
                stored.append((task, inputs, targets))
        return stored

    def continual_state(self) -> Dict[str, Any]:
        return {**super().continual_state(), "memory": self.memory}

    def load_continual_state(self, state: Mapping[str, Any]) -> None:
        super().load_continual_state(state)
        self.memory = {int(number): {"inputs": slot["inputs"].to(self.device),
                                     "targets": slot["targets"].to(self.device), "tasks": list(slot["tasks"])}
                       for number, slot in state["memory"].items()}


class Naive_Rehearsal(EpisodicMemory):
    """Each task trains on its data shuffled with the memory's samples, repeated
    ``max(task samples // memory_size, 1)`` times (about as many old samples as new ones); each stored sample goes
    through its own task's head."""

    def learn_task(self, task: str, train_loader, heads: Optional[Sequence[str]] = None, on_epoch=None) -> None:
        super().learn_task(task, self.replaying(train_loader), heads, on_epoch)
        self.remember(train_loader)

    def replaying(self, train_loader):
        """``train_loader`` with the memory's samples mixed in."""
        stored = self.stored_samples()
        if not stored:
            return train_loader
        repeats = max(train_loader.num_samples // self.settings.memory_size, 1)
        return train_loader.with_inputs(stored * repeats)


class Naive_Rehearsal_L2(Naive_Rehearsal, L2):
    """Rehearsal with the L2 penalty."""


class Naive_Rehearsal_SI(Naive_Rehearsal, SI):
    """Rehearsal with SI's penalty."""


class Naive_Rehearsal_EWC(Naive_Rehearsal, EWC):
    """Rehearsal with online EWC (one running anchor), as published."""

    online = True


class Naive_Rehearsal_MAS(Naive_Rehearsal, MAS):
    """Rehearsal with MAS's penalty."""


def quadprog_module():
    """quadprog, an optional dependency (the ``baselines`` extra), with a one-line error where it is missing."""
    try:
        import quadprog
    except ImportError:
        raise UserError("GEM solves its quadratic program with quadprog, which is not installed: pip install "
                        "quadprog (or the project with its baselines extra)") from None
    return quadprog


def project_gradient(gradient: torch.Tensor, memories: torch.Tensor, margin: float) -> torch.Tensor:
    """GEM's projection (Lopez-Paz & Ranzato 2017) of the gradient g onto the memories' gradients' cone.

    The g̃ closest to g with ``⟨g̃, m_k⟩ ≥ 0`` for each row m_k of M = ``memories``, through the dual quadratic
    program ``min_v ½ vᵀ(MMᵀ + εI)v + (Mg)ᵀv`` subject to ``v ≥ margin``; then ``g̃ = Mᵀv + g``. Solved by quadprog
    in float64 (ε = ``GEM_RIDGE``; with it a constraint that ends inactive holds up to ``−ε·v_k``).
    """
    quadprog = quadprog_module()
    M = memories.detach().double().cpu().numpy()
    g = gradient.detach().double().cpu().numpy()
    n_constraints = M.shape[0]
    P = M @ M.T
    P = 0.5 * (P + P.T) + GEM_RIDGE * np.eye(n_constraints)
    v = quadprog.solve_qp(P, -(M @ g), np.eye(n_constraints), np.full(n_constraints, float(margin)))[0]
    return torch.from_numpy(M.T @ v + g).to(gradient)


class GEM(EpisodicMemory):
    """Gradient Episodic Memory: every step's gradient g is projected (``project_gradient``, margin ``reg_coef``)
    when its inner product with the gradient of the loss on some earlier task's memory slot is negative, so that
    the step does not increase that loss (to first order). Both are taken over the parameters the step changes
    (those the optimizer holds: the shared ones and the task's own head). The memory is not replayed as training
    data."""

    capture_obstacle = ("decides on the host whether to project the gradient, and solves its quadratic program on "
                        "the CPU")

    def __init__(self, model: MultiHeadNet, settings: RehearsalSettings):
        quadprog_module()
        super().__init__(model, settings)

    def learn_task(self, task: str, train_loader, heads: Optional[Sequence[str]] = None, on_epoch=None) -> None:
        super().learn_task(task, train_loader, heads, on_epoch)
        self.remember(train_loader)

    def stepped_parameters(self) -> List[torch.nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @staticmethod
    def flat(gradients: Sequence[Optional[torch.Tensor]], parameters: Sequence[torch.Tensor]) -> torch.Tensor:
        """One vector of the parameters' gradients, in order (zeros where a parameter has none)."""
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                          for g, p in zip(gradients, parameters)])

    def memory_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> torch.Tensor:
        """One row per task stored: the gradient of the classification loss on its samples."""
        rows = []
        for task, inputs, targets in self.stored_samples():
            with self.autocast():
                loss = self.classification_loss(inputs, targets, [task] * len(targets))
            rows.append(self.flat(torch.autograd.grad(loss, parameters, allow_unused=True), parameters))
        return torch.stack(rows)

    def backward(self, terms: Dict[str, torch.Tensor]) -> None:
        super().backward(terms)
        if not self.stored_samples():
            return
        parameters = self.stepped_parameters()
        memories = self.memory_gradients(parameters)
        gradient = self.flat([p.grad for p in parameters], parameters)
        if bool((memories @ gradient < 0).any()):
            projected = project_gradient(gradient, memories, self.settings.reg_coef)
            offset = 0
            for p in parameters:
                p.grad = torch.empty_like(p).copy_(projected[offset:offset + p.numel()].view(p.shape))
                offset += p.numel()
