"""``SVDNet``: CACL. Sparse singular values and orthogonal factors while training; prune, freeze and refill after."""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from agents.compression import grown_free_rank, prune_by_energy
from agents.default import AgentConfig, NormalNN
from models.multihead import MultiHeadNet
from models.svd_conv import SVD_Conv2d, composing_once, init_components, svd_layers
from utils.errors import UserError
from utils.model_size import cacl_model_size_mb

log = logging.getLogger(__name__)

Norms = Tuple[torch.Tensor, torch.Tensor]
"""``(‖σ‖₁, ‖σ‖₂²)`` of some singular values."""


def norms(sigma: torch.Tensor, frozen: Optional[Norms] = None) -> Norms:
    """``‖σ‖₁`` and ``‖σ‖₂²`` of ``sigma`` together with frozen values whose own norms are ``frozen``."""
    l1, square = sigma.abs().sum(), (sigma * sigma).sum()
    if frozen is not None:
        l1, square = l1 + frozen[0], square + frozen[1]
    return l1, square


def hoyer(sigma: torch.Tensor, frozen: Optional[Norms] = None) -> torch.Tensor:
    """``‖σ‖₁ / ‖σ‖₂ − 1``: 0 for a single non-zero value, larger when the energy is spread out.

    σ is ``sigma`` and, when given, the frozen values whose ``norms`` are ``frozen`` (as for the other regularizers).
    """
    l1, square = norms(sigma, frozen)
    return l1 / square.sqrt() - 1


def hoyer_square(sigma: torch.Tensor, frozen: Optional[Norms] = None) -> torch.Tensor:
    """``‖σ‖₁² / ‖σ‖₂² − 1``."""
    l1, square = norms(sigma, frozen)
    return l1 ** 2 / square - 1


def l1(sigma: torch.Tensor, frozen: Optional[Norms] = None) -> torch.Tensor:
    """``‖σ‖₁``."""
    return norms(sigma, frozen)[0]


SPARSITY_REGULARIZERS = {"Hoyer": hoyer, "Hoyer-Square": hoyer_square, "L1": l1}


def orthogonality(factor: torch.Tensor) -> torch.Tensor:
    """``Σ (G − I)² / numel(G)`` with ``G`` the smaller of ``A·Aᵀ`` and ``Aᵀ·A``."""
    gram = factor @ factor.t() if factor.shape[0] <= factor.shape[1] else factor.t() @ factor
    identity = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
    return ((gram - identity) ** 2).sum() / gram.numel()


class FrozenOrthogonality:
    """``orthogonality`` of a factor whose first ``k`` components are constants, at a cost set by the others.

    With the factor as ``A`` (r × d), one component per row (``C``, or ``Nᵀ``), ``A_f`` its first k rows and ``A_t``
    the rest, and ``G`` the Gram matrix ``orthogonality`` picks for the factor as stored:

    - ``G = A·Aᵀ`` (r × r): ``‖G − I‖² = ‖A_f·A_fᵀ − I‖² + 2·‖A_f·A_tᵀ‖² + ‖A_t·A_tᵀ − I‖²``, the first a constant;
    - ``G = Aᵀ·A`` (d × d): ``G = A_fᵀ·A_f + A_tᵀ·A_t``, the first a constant.

    Both equal ``orthogonality(factor)`` up to floating-point rounding.
    """

    def __init__(self, factor: torch.Tensor, k: int, components_on_rows: bool):
        rows = factor.detach() if components_on_rows else factor.detach().t()
        r, d = rows.shape
        self.k = k
        self.components_on_rows = components_on_rows
        # orthogonality's choice: A·Aᵀ of the factor as stored when it has no more rows than columns
        self.component_gram = (factor.shape[0] <= factor.shape[1]) == components_on_rows
        self.numel = r * r if self.component_gram else d * d
        frozen = rows[:k].clone()
        if self.component_gram:
            self.frozen = frozen
            self.constant = ((frozen @ frozen.t() - torch.eye(k, dtype=rows.dtype, device=rows.device)) ** 2).sum()
        else:
            self.frozen_gram = frozen.t() @ frozen

    def __call__(self, factor: torch.Tensor) -> torch.Tensor:
        trainable = factor[self.k:] if self.components_on_rows else factor[:, self.k:].t()
        if self.component_gram:
            own = trainable @ trainable.t()
            own = own - torch.eye(own.shape[0], dtype=own.dtype, device=own.device)
            total = self.constant + 2 * ((self.frozen @ trainable.t()) ** 2).sum() + (own ** 2).sum()
        else:
            gram = self.frozen_gram + trainable.t() @ trainable
            total = ((gram - torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)) ** 2).sum()
        return total / self.numel


class FrozenPrefix:
    """The first ``k`` components of each SVD layer, which belong to earlier tasks, held constant for one task.

    - ``restore`` writes their saved values back after every optimizer step, so they stay bit-identical under any
      optimizer (weight decay, momentum);
    - their kernel is composed once (``SVD_Conv2d.set_constant_prefix``), and the constant parts of the sparsity and
      orthogonality terms are computed once, so a step's cost is set by the trainable components;
    - ``release`` (end of the task) gives the layers back their plain composition.
    """

    def __init__(self, layers: Sequence[SVD_Conv2d], prefix: Sequence[int]):
        self.layers = list(layers)
        self.prefix = list(prefix)
        self.slices = []
        self.sigma_norms: List[Optional[Norms]] = []
        self.orthogonality: List[Optional[Tuple[FrozenOrthogonality, FrozenOrthogonality]]] = []
        for layer, k in zip(self.layers, self.prefix):
            if k > 0:
                self.slices += [(layer.N, (slice(None), slice(0, k))), (layer.C, (slice(0, k),)),
                                (layer.Sigma, (slice(0, k),))]
                with torch.no_grad():
                    self.sigma_norms.append(norms(layer.Sigma[:k].detach()))
                    self.orthogonality.append((FrozenOrthogonality(layer.N, k, components_on_rows=False),
                                               FrozenOrthogonality(layer.C, k, components_on_rows=True)))
            else:
                self.sigma_norms.append(None)
                self.orthogonality.append(None)
            layer.set_constant_prefix(k)
        self.saved = [tensor[index].detach().clone() for tensor, index in self.slices]
        self.parameters = [(layer.N, layer.C, layer.Sigma) for layer in self.layers]

    @torch.no_grad()
    def restore(self) -> None:
        for (tensor, index), saved in zip(self.slices, self.saved):
            tensor[index] = saved

    def release(self) -> None:
        for layer in self.layers:
            layer.set_constant_prefix(0)

    def check_layers(self) -> None:
        """A bug guard: the layers still hold the components this prefix was taken from."""
        for layer, (N, C, Sigma) in zip(self.layers, self.parameters):
            if layer.N is not N or layer.C is not C or layer.Sigma is not Sigma:
                raise RuntimeError("an SVD layer's components were replaced during a task")


class SVDNet(NormalNN):
    """CACL (Compression-aware Continual Learning) on a model made of ``SVD_Conv2d`` layers.

    Continual-learning state: ``task_identifiers`` {task index: prefix length per SVD layer} (cumulative),
    ``task_name_count`` {task name: task index} and ``chann_used`` {task index: components added per layer}.
    """

    def __init__(self, model: MultiHeadNet, config: AgentConfig, writer=None):
        super().__init__(model, config, writer)
        self.layers = svd_layers(self.model)
        if not self.layers:
            raise UserError("the SVDNet agent needs a model with SVD layers: use --model_type customnet_SVD "
                            "--model_name Net_SVD, or --agent_type default --agent_name NormalNN for a dense model")
        if config.reg_type_svd not in SPARSITY_REGULARIZERS:
            raise UserError(f"unknown --reg_type_svd {config.reg_type_svd!r}; "
                            f"valid: {', '.join(SPARSITY_REGULARIZERS)}")
        self.sparsity = SPARSITY_REGULARIZERS[config.reg_type_svd]
        self.initial_ranks = [layer.rank for layer in self.layers]
        self.task_identifiers: Dict[int, List[int]] = {}
        self.task_name_count: Dict[str, int] = {}
        self.chann_used: Dict[int, List[int]] = {}
        self.frozen: Optional[FrozenPrefix] = None

    @property
    def frozen_prefix(self) -> List[int]:
        """Components of each layer that belong to earlier tasks (the last task's identifiers)."""
        if not self.task_identifiers:
            return [0] * len(self.layers)
        return list(self.task_identifiers[len(self.task_identifiers) - 1])

    def batchnorm_affine(self) -> List[nn.Parameter]:
        return [p for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                for p in m.parameters()]

    def trainable_parameters(self, task: str) -> List[nn.Parameter]:
        """As ``NormalNN``, but BatchNorm affine parameters train with the first task only (then stay untouched)."""
        parameters = super().trainable_parameters(task)
        if self.task_identifiers:
            frozen = {id(p) for p in self.batchnorm_affine()}
            parameters = [p for p in parameters if id(p) not in frozen]
        return parameters

    def begin_task(self, task: str) -> None:
        super().begin_task(task)
        if self.frozen is not None:
            self.frozen.release()
        self.frozen = FrozenPrefix(self.layers, self.frozen_prefix)

    def regularization(self) -> Dict[str, torch.Tensor]:
        """``sparse_wt · Σ_l sparsity(Σ_l)`` and ``perp_wt · Σ_l [orth(N_l) + orth(C_l)]``, over all components.

        During a task the frozen components' parts are the constants ``FrozenPrefix`` computed at its start.
        """
        if self.frozen is None:
            sparsity = sum(self.sparsity(layer.Sigma) for layer in self.layers)
            orth = sum(orthogonality(layer.N) + orthogonality(layer.C) for layer in self.layers)
        else:
            self.frozen.check_layers()
            sparsity, orth = 0, 0
            for layer, k, sigma_norms, frozen_orth in zip(self.layers, self.frozen.prefix, self.frozen.sigma_norms,
                                                          self.frozen.orthogonality):
                sparsity = sparsity + self.sparsity(layer.Sigma[k:], sigma_norms)
                if frozen_orth is None:
                    orth = orth + orthogonality(layer.N) + orthogonality(layer.C)
                else:
                    orth = orth + frozen_orth[0](layer.N) + frozen_orth[1](layer.C)
        return {"sparsity": self.config.sparse_wt * sparsity, "orthogonality": self.config.perp_wt * orth}

    def after_step(self) -> None:
        if self.frozen is not None:
            self.frozen.restore()

    @torch.no_grad()
    def end_task(self, task: str) -> None:
        """Prune the task's new components by energy, pack the kept ones after the frozen ones, refill with fresh."""
        if self.frozen is not None:
            self.frozen.release()
            self.frozen = None
        index = len(self.task_identifiers)
        start = self.frozen_prefix
        identifiers = []
        for layer_index, (layer, frozen) in enumerate(zip(self.layers, start)):
            keep = prune_by_energy(layer.Sigma, frozen, self.config.energy_sv, self.config.prev_sing)
            kept = torch.cat([torch.arange(frozen, device=keep.device),
                              frozen + keep.nonzero().flatten()])
            prefix = len(kept)
            free = layer.rank - prefix
            if self.config.grow_network:
                earlier = [self.task_identifiers[t][layer_index] for t in range(index)]
                free = grown_free_rank(free, earlier, self.initial_ranks[layer_index], self.config.grow_to_mean)
            self.refill(layer, kept, prefix + free)
            identifiers.append(prefix)
        self.task_identifiers[index] = identifiers
        self.task_name_count[task] = index
        self.chann_used[index] = [now - before for now, before in zip(identifiers, start)]
        log.info("task %s: components used %s, ranks now %s", task, identifiers, [l.rank for l in self.layers])

    @staticmethod
    def refill(layer: SVD_Conv2d, kept: torch.Tensor, rank: int) -> None:
        """Components ``kept`` first, in order, then ``rank − len(kept)`` fresh random ones."""
        N = layer.N.new_empty(layer.output_channel, rank)
        C = layer.C.new_empty(rank, layer.fan_in)
        Sigma = layer.Sigma.new_empty(rank)
        init_components(N, C, Sigma)
        n = len(kept)
        N[:, :n], C[:n], Sigma[:n] = layer.N[:, kept], layer.C[kept], layer.Sigma[kept]
        layer.set_components(N, C, Sigma)

    def evaluate(self, loader) -> float:
        """As ``NormalNN.evaluate``, composing each prefix's kernels once per call instead of once per batch."""
        with composing_once(self.layers):
            return super().evaluate(loader)

    def eval_ranks(self, task: str) -> Optional[List[int]]:
        """A trained task's own prefix of components. A task never trained on its own (before its turn, or after
        ``--offline_training``) uses every component kept so far, never the fresh random ones; with none kept yet,
        every component."""
        if task in self.task_name_count:
            return self.task_identifiers[self.task_name_count[task]]
        return self.frozen_prefix if self.task_identifiers else None

    def training_state(self) -> dict:
        return {**super().training_state(), "initial_ranks": list(self.initial_ranks),
                "task_identifiers": self.task_identifiers, "task_name_count": self.task_name_count,
                "chann_used": self.chann_used}

    def load_training_state(self, state: dict) -> None:
        super().load_training_state(state)
        self.load_continual_state(state["task_identifiers"], state["task_name_count"], state["chann_used"])
        self.initial_ranks = list(state["initial_ranks"])

    def load_continual_state(self, task_identifiers, task_name_count, chann_used) -> None:
        self.task_identifiers = {int(k): list(v) for k, v in task_identifiers.items()}
        self.task_name_count = {str(k): int(v) for k, v in task_name_count.items()}
        self.chann_used = {int(k): list(v) for k, v in chann_used.items()}
        self.tasks_trained = sorted(self.task_name_count, key=self.task_name_count.get)

    def model_size_mb(self) -> float:
        """Size from the components the tasks used (``utils.model_size.cacl_model_size_mb``)."""
        layers = [(layer.fan_in, layer.output_channel) for layer in self.layers]
        heads = sum(p.numel() for p in self.model.last.parameters())
        batchnorm = [m.num_features for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        return cacl_model_size_mb(layers, self.chann_used, heads, batchnorm)
