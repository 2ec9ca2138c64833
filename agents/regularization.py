"""The regularization baselines of the GT-RIPL benchmark: a quadratic penalty keeps the parameters near anchors.

``--agent_type regularization --agent_name L2|EWC|EWC_online|SI|MAS``. Each method differs only in how it weighs
each parameter (``importance``) and in how many anchors it keeps; SI also watches every step. The penalty's weight
λ is ``--reg_coef`` (``agents.default.NormalNNSettings``), one experiment ``<exp_name>_reg_coef<λ>`` per value.
"""
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

from agents.default import NormalNN, NormalNNSettings
from models.multihead import MultiHeadNet

Weights = Dict[str, torch.Tensor]
"""One tensor per trainable parameter, by the parameter's name."""

Anchor = Dict[str, Weights]
"""``{"importance": Ω, "parameters": θ*}``: where the penalty pulls the parameters, and how hard."""

TaskLogits = List[Tuple[Optional[torch.Tensor], torch.Tensor]]
"""A batch's ``(indices, logits)`` per task, as ``NormalNN.task_logits`` gives them."""

SI_DAMPING = 0.1
"""ξ of SI's importance ``w / (Δθ² + ξ)`` (the published ``damping_factor``)."""


class L2(NormalNN):
    """Penalty ``λ · Σ_anchors Σ_θ Ω · (θ − θ*)²`` over every trainable parameter (heads included), added to the
    loss; after each task an anchor θ* = the parameters reached, with importance Ω = 1.

    ``online``: one running anchor (slot 1, replaced after every task); otherwise one anchor per task.
    """

    online = True

    def __init__(self, model: MultiHeadNet, settings: NormalNNSettings):
        super().__init__(model, settings)
        self.params = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        self.anchors: Dict[int, Anchor] = {}
        """Anchor slots, numbered from 1 (online methods keep slot 1 only)."""

    # --- the penalty ----------------------------------------------------------------------------------------
    def regularization(self) -> Dict[str, torch.Tensor]:
        if not self.anchors:
            return {}
        return {"penalty": self.settings.reg_coef * self.penalty()}

    def penalty(self) -> torch.Tensor:
        """``Σ_anchors Σ_θ Σ Ω · (θ − θ*)²``."""
        total = 0.0
        for anchor in self.anchors.values():
            importance, parameters = anchor["importance"], anchor["parameters"]
            for name, p in self.params.items():
                total = total + (importance[name] * (p - parameters[name]) ** 2).sum()
        return total

    # --- after a task ---------------------------------------------------------------------------------------
    def consolidate(self, task: str, train_loader) -> None:
        """A new anchor at the parameters reached, weighed by ``importance`` (in slot 1 when ``online``)."""
        super().consolidate(task, train_loader)
        parameters = {name: p.detach().clone() for name, p in self.params.items()}
        importance = self.importance(train_loader)
        slot = 1 if self.online else len(self.anchors) + 1
        self.anchors[slot] = {"importance": importance, "parameters": parameters}

    def importance(self, train_loader) -> Weights:
        """Ω = 1 for every parameter."""
        return {name: torch.ones_like(p) for name, p in self.params.items()}

    def running_importance(self) -> Weights:
        """Where a new importance accumulates: the running anchor's (online, after the first task), else zeros."""
        if self.online and self.anchors:
            return self.anchors[1]["importance"]
        return {name: torch.zeros_like(p) for name, p in self.params.items()}

    def batch_gradients(self, train_loader,
                        batch_loss: Callable[[TaskLogits], torch.Tensor]) -> Iterator[Tuple[int, Weights]]:
        """For each batch of ``train_loader``, in eval mode: its size and the gradient of ``batch_loss`` of its
        logits for every parameter it reaches."""
        was_training = self.model.training
        self.model.eval()
        names = list(self.params)
        try:
            for inputs, _, tasks in train_loader:
                with self.autocast():
                    features = self.model.features(inputs.contiguous(memory_format=self.memory_format))
                    loss = batch_loss(list(self.task_logits(features, tasks)))
                gradients = torch.autograd.grad(loss, [self.params[name] for name in names], allow_unused=True)
                yield len(tasks), {name: g for name, g in zip(names, gradients) if g is not None}
        finally:
            self.model.train(was_training)

    # --- state ----------------------------------------------------------------------------------------------
    def continual_state(self) -> Dict[str, Any]:
        return {**super().continual_state(), "anchors": self.anchors}

    def load_continual_state(self, state: Mapping[str, Any]) -> None:
        super().load_continual_state(state)
        self.anchors = {int(slot): on_device(anchor, self.device) for slot, anchor in state["anchors"].items()}


def on_device(nested: Dict[str, Weights], device: torch.device) -> Dict[str, Weights]:
    return {key: {name: tensor.to(device) for name, tensor in weights.items()} for key, weights in nested.items()}


def predicted_label_loss(task_logits: TaskLogits) -> torch.Tensor:
    """Multi-head cross-entropy against the model's own predictions (argmax), averaged over the batch."""
    loss = sum(F.cross_entropy(logits, logits.argmax(1), reduction="sum") for _, logits in task_logits)
    return loss / sum(len(logits) for _, logits in task_logits)


def mean_squared_output(task_logits: TaskLogits) -> torch.Tensor:
    """Each sample's mean squared output of its task's head, averaged over the batch (for a batch of one task:
    the mean of the head's squared outputs)."""
    total = sum((logits ** 2).mean(1).sum() for _, logits in task_logits)
    return total / sum(len(logits) for _, logits in task_logits)


class EWC(L2):
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017), one anchor per task.

    Ω = Σ_batches g² · (batch size) / (number of batches), g the gradient, in eval mode, of the cross-entropy against
    the model's own predicted labels (the diagonal Fisher information, as published; the published ``empFI`` switch
    to ground-truth labels is set by no flag and is not carried over).
    """

    online = False

    def importance(self, train_loader) -> Weights:
        importance = self.running_importance()
        n_batches = len(train_loader)
        for size, gradients in self.batch_gradients(train_loader, predicted_label_loss):
            for name, gradient in gradients.items():
                importance[name] += gradient ** 2 * size / n_batches
        return importance


class EWC_online(EWC):
    """Online EWC: one running anchor whose importance adds up over the tasks (added, not decayed, as published)."""

    title = "online EWC"
    online = True


class MAS(L2):
    """Memory Aware Synapses (Aljundi et al. 2018), one running anchor.

    Ω += Σ_batches |g| / (number of batches), g the gradient, in eval mode, of the mean of the squared outputs of the
    task's head.
    """

    def importance(self, train_loader) -> Weights:
        importance = self.running_importance()
        n_batches = len(train_loader)
        for _, gradients in self.batch_gradients(train_loader, mean_squared_output):
            for name, gradient in gradients.items():
                importance[name] += gradient.abs() / n_batches
        return importance


class SI(L2):
    """Synaptic Intelligence (Zenke et al. 2017), one running anchor.

    Every step, ``w −= g · Δθ_step``, g the gradient of the loss without the penalty and Δθ_step the step's change
    of the parameters; after each task ``Ω += w / (Δθ² + ξ)``, Δθ the change since the previous anchor (the initial
    parameters for the first task), and ``w`` is reset.
    """

    def __init__(self, model: MultiHeadNet, settings: NormalNNSettings):
        super().__init__(model, settings)
        self.w = {name: torch.zeros_like(p) for name, p in self.params.items()}
        self.initial_parameters = {name: p.detach().clone() for name, p in self.params.items()}
        self.unregularized: Weights = {}
        self.before_step: Weights = {}

    def backward(self, terms: Dict[str, torch.Tensor]) -> None:
        """The gradient of the loss without the penalty, kept as SI's g, plus the penalty's: the loss's gradient."""
        names = list(self.params)
        gradients = torch.autograd.grad(terms["ce"], [self.params[name] for name in names], allow_unused=True)
        self.unregularized = {name: g for name, g in zip(names, gradients) if g is not None}
        if "penalty" in terms:
            terms["penalty"].backward()
        for name, gradient in self.unregularized.items():
            p = self.params[name]
            p.grad = gradient.clone() if p.grad is None else p.grad + gradient
        self.before_step = {name: p.detach().clone() for name, p in self.params.items()}

    def after_step(self) -> None:
        super().after_step()
        for name, gradient in self.unregularized.items():
            self.w[name] -= gradient * (self.params[name].detach() - self.before_step[name])

    def importance(self, train_loader) -> Weights:
        if self.anchors:
            importance, previous = self.anchors[1]["importance"], self.anchors[1]["parameters"]
        else:
            importance, previous = self.running_importance(), self.initial_parameters
        for name, p in self.params.items():
            importance[name] += self.w[name] / ((p.detach() - previous[name]) ** 2 + SI_DAMPING)
            self.w[name].zero_()
        return importance

    def continual_state(self) -> Dict[str, Any]:
        return {**super().continual_state(), "w": self.w, "initial_parameters": self.initial_parameters}

    def load_continual_state(self, state: Mapping[str, Any]) -> None:
        super().load_continual_state(state)
        loaded = on_device({"w": state["w"], "initial": state["initial_parameters"]}, self.device)
        self.w, self.initial_parameters = loaded["w"], loaded["initial"]
