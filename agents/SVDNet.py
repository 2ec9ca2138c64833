"""``SVDNet``: CACL. Sparse singular values and orthogonal factors while training; prune, freeze and refill after."""
import logging
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from agents.compression import grown_free_rank, prune_by_energy
from agents.default import AgentConfig, NormalNN
from models.multihead import MultiHeadNet
from models.svd_conv import SVD_Conv2d, init_components, svd_layers
from utils.errors import UserError
from utils.model_size import cacl_model_size_mb

log = logging.getLogger(__name__)


def hoyer(sigma: torch.Tensor) -> torch.Tensor:
    """``‖σ‖₁ / ‖σ‖₂ − 1``: 0 for a single non-zero value, larger when the energy is spread out."""
    return sigma.abs().sum() / sigma.norm() - 1


def hoyer_square(sigma: torch.Tensor) -> torch.Tensor:
    """``‖σ‖₁² / ‖σ‖₂² − 1``."""
    return sigma.abs().sum() ** 2 / (sigma * sigma).sum() - 1


def l1(sigma: torch.Tensor) -> torch.Tensor:
    """``‖σ‖₁``."""
    return sigma.abs().sum()


SPARSITY_REGULARIZERS = {"Hoyer": hoyer, "Hoyer-Square": hoyer_square, "L1": l1}


def orthogonality(factor: torch.Tensor) -> torch.Tensor:
    """``Σ (G − I)² / numel(G)`` with ``G`` the smaller of ``A·Aᵀ`` and ``Aᵀ·A``."""
    gram = factor @ factor.t() if factor.shape[0] <= factor.shape[1] else factor.t() @ factor
    identity = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
    return ((gram - identity) ** 2).sum() / gram.numel()


class FrozenPrefix:
    """Keeps the first ``k`` components of each SVD layer bit-identical across optimizer steps.

    The optimizer may still move them (weight decay, momentum); ``restore`` writes the saved values back after
    every step, so the guarantee holds for any optimizer.
    """

    def __init__(self, layers: Sequence[SVD_Conv2d], prefix: Sequence[int]):
        self.slices = []
        for layer, k in zip(layers, prefix):
            if k > 0:
                self.slices += [(layer.N, (slice(None), slice(0, k))), (layer.C, (slice(0, k),)),
                                (layer.Sigma, (slice(0, k),))]
        self.saved = [tensor[index].detach().clone() for tensor, index in self.slices]

    @torch.no_grad()
    def restore(self) -> None:
        for (tensor, index), saved in zip(self.slices, self.saved):
            tensor[index] = saved


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
        self.frozen = FrozenPrefix(self.layers, self.frozen_prefix)

    def regularization(self) -> Dict[str, torch.Tensor]:
        """``sparse_wt · Σ_l sparsity(Σ_l)`` and ``perp_wt · Σ_l [orth(N_l) + orth(C_l)]``."""
        sparsity = sum(self.sparsity(layer.Sigma) for layer in self.layers)
        orth = sum(orthogonality(layer.N) + orthogonality(layer.C) for layer in self.layers)
        return {"sparsity": self.config.sparse_wt * sparsity, "orthogonality": self.config.perp_wt * orth}

    def after_step(self) -> None:
        self.frozen.restore()

    @torch.no_grad()
    def end_task(self, task: str) -> None:
        """Prune the task's new components by energy, pack the kept ones after the frozen ones, refill with fresh."""
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

    def eval_ranks(self, task: str) -> Optional[List[int]]:
        """A trained task's own prefix of components; a task not trained yet uses all of them."""
        if task not in self.task_name_count:
            return None
        return self.task_identifiers[self.task_name_count[task]]

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
