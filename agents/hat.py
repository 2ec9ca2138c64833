"""``HAT``: Hard Attention to the Task (Serrà, Surís, Miron & Karatzoglou, ICML 2018), from the authors' code
``joansj/hat`` (``src/approaches/hat.py``: ``Appr``; ``src/networks/alexnet_hat.py``: ``Net``).

``--agent_type hat --agent_name HAT``, on the dense ``Net`` or the dense VGG16-BN. Each task has a gate per unit (output
channel) of every convolution; what earlier tasks' gates use, later tasks may not change. The rules:

- Gates (``Net.mask``, ``Net.forward``): ``a = σ(s·e)``, ``e`` the task's embedding of the layer, one number per unit,
  drawn from N(0, 1) when the task begins (``torch.nn.Embedding``'s initialisation); the gate multiplies the unit's
  output (here right after the convolution, or after its BatchNorm: before the ReLU, pooling and dropout that the
  published network gates after, which is the same for gates ≥ 0).
- Annealing (``Appr.train_epoch``): ``s = 1/smax + (smax − 1/smax) · i / N`` for the batch starting at sample ``i`` of
  the epoch's ``N`` (the code's formula: it never quite reaches ``smax``, the paper's (b−1)/(B−1) does); evaluation
  uses ``s = smax`` (``Appr.eval``): the binary gates.
- Attention regularizer (``Appr.criterion``): ``lamb · Σ a·(1 − a_<t) / Σ (1 − a_<t)`` over every unit, added to the
  cross-entropy, ``a_<t`` the cumulative gates of the earlier tasks (0 before the first: ``Σ a / units``); ``lamb``
  (the paper's ``c``) 0.75.
- Cumulative gates (``Appr.train``, ``mask_pre``): after task t, ``a_≤t = max(a_<t, σ(smax·e_t))``.
- Weight gradients (``Appr.train_epoch``, ``mask_back``; ``Net.get_view_for``): the gradient of a kernel weight from
  unit ``j`` of the previous convolution to unit ``i`` is multiplied by ``1 − min(a_<t[i], a_<t[j])``; a bias (and,
  here, a BatchNorm weight or bias) of unit ``i`` by ``1 − a_<t[i]``; the first convolution's weights by
  ``1 − a_<t[i]``. Heads are one per task and are not scaled.
- Embedding gradient (``Appr.train_epoch``): multiplied by
  ``smax / s · (cosh(clamp(s·e, ±thres_cosh)) + 1) / (cosh(e) + 1)`` (``thres_cosh`` 50); then every gradient's norm
  clipped at ``CLIP_GRADIENT_NORM`` (``clipgrad``, ``Appr.__init__``); after the step the embedding is clamped to
  ``±thres_emb`` (6).
- Defaults (``Appr.__init__``): ``smax`` 400 and ``lamb`` 0.75, the values the authors' grid searches chose.

Where this differs from the authors' code:

- The weights' scaling is also applied to the step: after every optimizer step, each weight's change ``Δ`` becomes
  ``Δ · (1 − min(a_<t[i], a_<t[j]))`` (``after_step``), so that Adam's per-coordinate scaling, momentum or weight
  decay cannot undo it. Under plain SGD ``Δ = −lr·g`` is scaled already: the published rule.
- The embeddings take a plain SGD step at ``--hat_lr_embedding`` (0.05, the published learning rate; times the
  schedule's decay), whatever ``--optimizer`` steps the weights: the compensation above is a rule about the size of
  their gradient, which Adam's per-coordinate normalisation would discard (under Adam at 1e-3 an embedding moves by
  about lr per step, so a task's gates stay the signs of its random initial embedding).
- The embedding of a task is drawn when it begins (the code draws every task's at once, ``torch.nn.Embedding`` in
  ``Net.__init__``: the same distribution); no validation split picks the epoch whose model is kept
  (``Appr.train``): a task trains the epochs of ``--schedule``, as every method here.
- BatchNorm (VGG16-BN; the published networks have none): from the second task on its layers run in eval mode, so the
  statistics earlier tasks are evaluated with stay as the first task left them (as PackNet's ``train_nobn``); its
  weight and bias are scaled as a bias is.
- Its evaluated weights hold no subnormal float (below 10⁻³⁸, ``SUBNORMAL``): the unused units' gates produce them.
  (Training on the CPU flushes them to 0 for every method: ``utils.runtime.subnormals_flushed``.)
"""
from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Mapping, Sequence, Tuple

import torch
from torch import nn

from agents.batchnorm import batchnorm_layers
from agents.default import LoopSettings
from agents.model_size import dense_size_mb
from agents.saved_state import SavedContinualState
from agents.step import compiled
from models import check_dense_model
from models.multihead import MultiHeadNet
from utils.flags import at_least_zero, flag, positive

CLIP_GRADIENT_NORM = 10000.0
"""The published ``clipgrad``: the norm every step's gradients are clipped to (``torch.nn.utils.clip_grad_norm_``)."""
SUBNORMAL = torch.finfo(torch.float32).tiny
"""Below this, a float32 is subnormal: σ(s·e) of an unused unit reaches there (s·e < −87) and spreads through the
products, and each operation on a subnormal number takes an x86 CPU many times longer (a training step of the dense
``Net`` 4× longer). A run flushes them to 0 on the CPU (``utils.runtime.subnormals_flushed``, every method); a task's
evaluated (and exported) network has its subnormal gated weights set to 0 wherever it runs: values 10⁻³⁸ and below,
whose effect on the outputs is below float32's resolution."""
USED = 0.5
"""A unit a task's binary gate (``σ(smax·e)``) exceeds this for is used by the task (``units_added``)."""

Gates = List[torch.Tensor]
"""One tensor per gated layer, one number per unit."""


@dataclass
class HATSettings(LoopSettings):
    """HAT's own flags (the published defaults of ``Appr``)."""

    hat_smax: float = flag(400.0, "the gates' largest scale s (binary gates at evaluation)", valid=positive,
                           requirement="must be positive")
    hat_lamb: float = flag(0.75, "weight of the attention regularizer (the paper's c)", valid=at_least_zero,
                           requirement="must be 0 or more (a negative weight rewards using more units)")
    hat_thres_cosh: float = flag(50.0, "clamp of s·e in the embedding gradient's compensation", valid=positive,
                                 requirement="must be positive")
    hat_thres_emb: float = flag(6.0, "clamp of the embeddings after each step", valid=positive,
                                requirement="must be positive")
    hat_lr_embedding: float = flag(0.05, "learning rate of the embeddings' plain SGD step", valid=positive,
                                   requirement="must be positive")


def gated_layers(model: MultiHeadNet) -> List[Tuple[nn.Conv2d, nn.Module]]:
    """``(convolution, the layer whose output its gate multiplies)`` for each feature convolution, in order: the
    BatchNorm right after it, else the convolution itself."""
    layers = model.feature_layers()
    gated = []
    for position, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            following = layers[position + 1] if position + 1 < len(layers) else None
            gated.append((layer, following if isinstance(following, nn.BatchNorm2d) else layer))
    return gated


def compensated(gradient: torch.Tensor, embedding: torch.Tensor, s: float, smax: float,
                thres_cosh: float) -> torch.Tensor:
    """The embedding's gradient times ``smax / s · (cosh(clamp(s·e, ±thres_cosh)) + 1) / (cosh(e) + 1)``."""
    numerator = torch.cosh(torch.clamp(s * embedding, -thres_cosh, thres_cosh)) + 1
    return gradient * (smax / s) * numerator / (torch.cosh(embedding) + 1)


class HAT(SavedContinualState):
    """Hard attention to the task on a dense network (rules and sources: the module docstring).

    Continual-learning state: ``embeddings`` {task: one tensor per gated layer}, of the tasks trained and of the one
    training.
    """

    Settings = HATSettings
    STATE_FILE = "hat.pth"
    capture_obstacle = ("anneals its gates' scale s by the batch's place in the epoch, a number kept in Python (a "
                        "captured step would replay the first batch's s)")

    def __init__(self, model: MultiHeadNet, settings: HATSettings):
        super().__init__(model, settings)
        self.layers = gated_layers(self.model)
        self.gated = {id(output): index for index, (_, output) in enumerate(self.layers)}
        self.embeddings: Dict[str, Gates] = {}
        self.gates: Gates = []
        """The gates of the current training step."""
        self.s = settings.hat_smax
        self.epoch_samples = 0
        self.position = 0
        """The first sample of the next batch in the epoch (the annealing's ``i``)."""
        self.free_units: Gates = []
        """``1 − a_<t``: what the earlier tasks leave free of each unit, for the task training."""
        self.scaled: List[Tuple[nn.Parameter, torch.Tensor]] = []
        """``(parameter, 1 − min(a_<t[i], a_<t[j]) as it applies to it)`` for the task training."""
        self.before_step: List[torch.Tensor] = []

    @classmethod
    def check_model(cls, model_type: str, model_name: str) -> None:
        check_dense_model(model_type, model_name, "HAT")

    @property
    def units(self) -> List[int]:
        return [convolution.out_channels for convolution, _ in self.layers]

    # --- gates ----------------------------------------------------------------------------------------------
    def binary_gates(self, task: str) -> Gates:
        """``σ(smax·e)`` of a task with an embedding; for a task never trained on its own (``--offline_training``)
        the units the trained tasks use (``used_gates``; all of them before any task)."""
        if task in self.embeddings:
            return [torch.sigmoid(self.settings.hat_smax * e.detach()) for e in self.embeddings[task]]
        if self.tasks_trained:
            return self.used_gates(self.tasks_trained)
        return [torch.ones(units, device=self.device) for units in self.units]

    def used_gates(self, tasks: Sequence[str]) -> Gates:
        """The cumulative gates of ``tasks``: ``max`` over them of their binary gates (zeros for none)."""
        if not tasks:
            return [torch.zeros(units, device=self.device) for units in self.units]
        gates = [self.binary_gates(task) for task in tasks]
        return [torch.stack(layer).amax(0) for layer in zip(*gates)]

    def gated_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's features with ``self.gates`` multiplying each gated layer's output."""
        x = inputs
        for layer in self.model.feature_layers():
            x = layer(x)
            index = self.gated.get(id(layer))
            if index is not None:
                x = x * self.gates[index].view(1, -1, 1, 1)
        return x.flatten(1)

    # --- training -------------------------------------------------------------------------------------------
    def learn_task(self, task: str, train_loader, heads=None, on_epoch=None) -> None:
        self.epoch_samples, self.position = train_loader.num_samples, 0
        super().learn_task(task, train_loader, heads, on_epoch)

    def begin_task(self, task: str) -> None:
        """The task's embeddings (drawn unless resumed), its gated forward, the units the earlier tasks leave free,
        and the scaling of each weight by them."""
        if task not in self.embeddings:
            self.embeddings[task] = [torch.randn(units).to(self.device) for units in self.units]
        for embedding in self.embeddings[task]:
            embedding.requires_grad_(True)
        super().begin_task(task)
        self.training_features = compiled(self.gated_features) if self.settings.compile else self.gated_features
        used = self.used_gates(self.tasks_trained)
        self.free_units = [1 - layer for layer in used]
        self.scaled = self.free_fractions(used) if self.tasks_trained else []

    def free_fractions(self, used: Gates) -> List[Tuple[nn.Parameter, torch.Tensor]]:
        """``(parameter, factor)`` for every parameter of the gated layers: ``1 − min(used[i], used_prev[j])`` for a
        kernel (``1 − used[i]`` for the first), ``1 − used[i]`` for a bias or BatchNorm parameter."""
        factors = []
        previous = None
        for (convolution, output), unit_used in zip(self.layers, used):
            post = unit_used.view(-1, 1, 1, 1)
            kernel = post if previous is None else torch.minimum(post, previous.view(1, -1, 1, 1))
            factors.append((convolution.weight, 1 - kernel.expand_as(convolution.weight)))
            per_unit = [convolution.bias] + ([output.weight, output.bias] if output is not convolution else [])
            factors += [(p, 1 - unit_used) for p in per_unit if p is not None]
            previous = unit_used
        return factors

    def begin_epoch(self, task: str, epoch: int) -> None:
        """BatchNorm in eval mode from the second task on (its statistics stay the first task's)."""
        if self.tasks_trained:
            for layer in batchnorm_layers(self.model):
                layer.eval()

    def observe(self, inputs: torch.Tensor, targets: torch.Tensor, tasks: Sequence[str]) -> Dict[str, torch.Tensor]:
        """One step at the annealed ``s`` of the batch's place in the epoch."""
        smax = self.settings.hat_smax
        self.s = 1 / smax + (smax - 1 / smax) * self.position / self.epoch_samples
        self.gates = [torch.sigmoid(self.s * e) for e in self.embeddings[self.current_task]]
        terms = super().observe(inputs, targets, tasks)
        self.position = (self.position + len(targets)) % self.epoch_samples
        return terms

    def regularization(self) -> Dict[str, torch.Tensor]:
        """``lamb · Σ a·(1 − a_<t) / Σ (1 − a_<t)``."""
        weighted = sum((gate * free).sum() for gate, free in zip(self.gates, self.free_units))
        return {"attention": self.settings.hat_lamb * weighted / sum(free.sum() for free in self.free_units)}

    def backward(self, terms: Dict[str, torch.Tensor]) -> None:
        """The loss's gradients, the embeddings' compensated, then all clipped as published; the weights' scaling is
        left to ``after_step`` (it scales the step), and the weights are kept for it."""
        super().backward(terms)
        settings = self.settings
        with torch.no_grad():
            for embedding in self.embeddings[self.current_task]:
                embedding.grad = compensated(embedding.grad, embedding, self.s, settings.hat_smax,
                                             settings.hat_thres_cosh)
            self.clip_gradients()
            self.before_step = [parameter.clone() for parameter, _ in self.scaled]

    def clip_gradients(self) -> None:
        """Every gradient times ``min(1, CLIP_GRADIENT_NORM / (‖g‖ + 1e-6))`` (``clip_grad_norm_``'s formula), ``‖g‖``
        the norm of the published gradients: the weights' scaled by what earlier tasks leave free."""
        factors = {id(parameter): factor for parameter, factor in self.scaled}
        trained = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        gradients = [p.grad * factors[id(p)] if id(p) in factors else p.grad for p in trained]
        gradients += [embedding.grad for embedding in self.embeddings[self.current_task]]
        norm = torch.stack([gradient.norm() for gradient in gradients]).norm()
        coefficient = (CLIP_GRADIENT_NORM / (norm + 1e-6)).clamp(max=1.0)
        for gradient in [p.grad for p in trained] + [e.grad for e in self.embeddings[self.current_task]]:
            gradient.mul_(coefficient)

    @torch.no_grad()
    def after_step(self) -> None:
        """Each weight's change scaled by what earlier tasks leave free (under plain SGD: the published scaling of
        its gradient); the embeddings' SGD step, clamped."""
        for (parameter, factor), before in zip(self.scaled, self.before_step):
            parameter.copy_(before + factor * (parameter - before))
        settings = self.settings
        lr = settings.hat_lr_embedding * self.optimizer.param_groups[0]["lr"] / settings.lr
        for embedding in self.embeddings[self.current_task]:
            embedding -= lr * embedding.grad
            embedding.clamp_(-settings.hat_thres_emb, settings.hat_thres_emb)
            embedding.grad = None

    def end_task(self, task: str) -> None:
        super().end_task(task)
        for embedding in self.embeddings[task]:
            embedding.requires_grad_(False)

    # --- evaluation -----------------------------------------------------------------------------------------
    def trunk_key(self, task: str) -> Hashable:
        """Each task's own: its binary gates are folded into its network's layers (``task_network``)."""
        return task

    @torch.no_grad()
    def task_network(self, task: str) -> nn.Sequential:
        """The plain network of ``NormalNN.task_network`` with the task's binary gates folded into each
        convolution's output channels (after its BatchNorm, which the plain network has folded in already); the
        subnormal products flushed to 0 (``SUBNORMAL``)."""
        network = super().task_network(task)
        convolutions = [layer for layer in network.modules() if isinstance(layer, nn.Conv2d)]
        gates = self.binary_gates(task)
        if len(convolutions) != len(gates):
            raise RuntimeError(f"the task network has {len(convolutions)} convolutions, HAT gates {len(gates)}")
        for convolution, gate in zip(convolutions, gates):
            for parameter, factor in ((convolution.weight, gate.view(-1, 1, 1, 1)), (convolution.bias, gate)):
                if parameter is not None:
                    parameter.mul_(factor).masked_fill_(parameter.abs() < SUBNORMAL, 0)
        return network

    # --- state ----------------------------------------------------------------------------------------------
    def continual_state(self) -> Dict[str, Any]:
        return {"hat_embeddings": {task: [e.detach() for e in layers] for task, layers in self.embeddings.items()}}

    def load_continual_state(self, state: Mapping[str, Any]) -> None:
        self.embeddings = {str(task): [e.to(self.device).clone() for e in layers]
                           for task, layers in state["hat_embeddings"].items()}

    # --- outputs --------------------------------------------------------------------------------------------
    def units_added(self) -> Dict[int, List[int]]:
        """The units each task's binary gates use that no earlier task's did, per layer."""
        added = {}
        for index, task in enumerate(self.tasks_trained):
            before = self.used_gates(self.tasks_trained[:index])
            added[index] = [int(((now > USED) & (earlier <= USED)).sum())
                            for now, earlier in zip(self.binary_gates(task), before)]
        return added

    def results_keys(self) -> Dict[str, Any]:
        """``hat_units_used``: per layer, the units some task's binary gates use."""
        used = self.used_gates(self.tasks_trained) if self.tasks_trained else []
        return {"hat_units_used": [int((layer > USED).sum()) for layer in used]}

    def model_size_mb(self) -> float:
        """The model's parameters and each trained task's gates (its embeddings), float32:
        ``4 B × (parameters + tasks · units) / 1e6``."""
        parameters = sum(p.numel() for p in self.model.parameters())
        return dense_size_mb(parameters + len(self.tasks_trained) * sum(self.units))
