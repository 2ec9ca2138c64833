"""``SVDNet``: CACL. Sparse singular values and orthogonal factors while training; prune, freeze and refill after."""
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import nn

from agents.batchnorm import batchnorm_layers
from agents.compression import grown_free_rank, prune_by_energy
from agents.default import NormalNN, NormalNNSettings
from agents.freezing import FrozenPrefix
from agents.model_size import cacl_model_size_mb
from agents.regularizers import SPARSITY_REGULARIZERS, FrozenTerms, cacl_terms
from models.multihead import MultiHeadNet
from models.svd_conv import SVD_Conv2d, svd_layers
from utils.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class SVDNetSettings(NormalNNSettings):
    """CACL's own flags, with the published names and defaults."""

    sparse_wt: float = 0.01
    perp_wt: float = 1.0
    energy_sv: float = 3e-5
    reg_type_svd: str = "Hoyer"
    prev_sing: bool = False
    grow_network: bool = False
    dataset: str = "CIFAR10"
    """Decides the growth target (``agents.compression.grown_free_rank``)."""


class SVDNet(NormalNN):
    """CACL (Compression-aware Continual Learning) on a model made of ``SVD_Conv2d`` layers.

    Continual-learning state: ``task_identifiers`` {task index: prefix length per SVD layer} (cumulative),
    ``task_name_count`` {task name: task index} and ``chann_used`` {task index: components added per layer}.
    """

    Settings = SVDNetSettings

    def __init__(self, model: MultiHeadNet, settings: SVDNetSettings):
        super().__init__(model, settings)
        self.layers = svd_layers(self.model)
        if not self.layers:
            raise UserError("the SVDNet agent needs a model with SVD layers: use --model_type customnet_SVD "
                            "--model_name Net_SVD, or --agent_type default --agent_name NormalNN for a dense model")
        if settings.reg_type_svd not in SPARSITY_REGULARIZERS:
            raise UserError(f"unknown --reg_type_svd {settings.reg_type_svd!r}; "
                            f"valid: {', '.join(SPARSITY_REGULARIZERS)}")
        self.sparsity = SPARSITY_REGULARIZERS[settings.reg_type_svd]
        self.initial_ranks = [layer.rank for layer in self.layers]
        self.task_identifiers: Dict[int, List[int]] = {}
        self.task_name_count: Dict[str, int] = {}
        self.chann_used: Dict[int, List[int]] = {}
        self.frozen: Optional[FrozenPrefix] = None
        self.frozen_terms: Optional[FrozenTerms] = None

    @property
    def frozen_prefix(self) -> List[int]:
        """Components of each layer that belong to earlier tasks (the last task's identifiers)."""
        if not self.task_identifiers:
            return [0] * len(self.layers)
        return list(self.task_identifiers[len(self.task_identifiers) - 1])

    # --- training -------------------------------------------------------------------------------------------
    def freeze(self, task: str) -> List[nn.Parameter]:
        """CACL's freezing rule, whole. While ``task`` trains:

        - the first ``k_l`` components of each SVD layer ``l`` (``k`` = ``frozen_prefix``, the components kept by
          earlier tasks) are written back after every optimizer step (``after_step``), so they stay bit-identical
          under any optimizer; their kernel is composed once and their share of the regularizers computed once;
        - BatchNorm affine parameters train with the first task only;
        - other tasks' heads are not given to the optimizer (``NormalNN.freeze``).

        Returns the parameters the optimizer may change.
        """
        self.release()
        prefix = self.frozen_prefix
        self.frozen = FrozenPrefix(self.layers, prefix)
        self.frozen_terms = FrozenTerms(self.layers, prefix)
        parameters = super().freeze(task)
        if self.task_identifiers:
            affine = {id(p) for layer in batchnorm_layers(self.model) for p in layer.parameters()}
            parameters = [p for p in parameters if id(p) not in affine]
        return parameters

    def after_step(self) -> None:
        if self.frozen is not None:
            self.frozen.restore()

    def release(self) -> None:
        """End the freezing of ``freeze`` (the layers compose their kernels plainly again)."""
        if self.frozen is not None:
            self.frozen.release()
        self.frozen, self.frozen_terms = None, None

    def regularization(self) -> Dict[str, torch.Tensor]:
        """``sparse_wt · Σ_l sparsity(Σ_l)`` and ``perp_wt · Σ_l [orth(N_l) + orth(C_l)]``, over all components.

        During a task the frozen components' shares are the constants ``FrozenTerms`` computed at its start.
        """
        if self.frozen is None:
            sparsity, orth = cacl_terms(self.layers, self.sparsity)
        else:
            self.frozen.check_layers()
            sparsity, orth = self.frozen_terms(self.layers, self.sparsity)
        return {"sparsity": self.settings.sparse_wt * sparsity, "orthogonality": self.settings.perp_wt * orth}

    @torch.no_grad()
    def end_task(self, task: str) -> None:
        """Prune the task's new components by energy, pack the kept ones after the frozen ones, refill with fresh."""
        self.release()
        settings = self.settings
        index = len(self.task_identifiers)
        start = self.frozen_prefix
        identifiers = []
        for layer_index, (layer, frozen) in enumerate(zip(self.layers, start)):
            keep = prune_by_energy(layer.Sigma, frozen, settings.energy_sv, settings.prev_sing)
            kept = torch.cat([torch.arange(frozen, device=keep.device), frozen + keep.nonzero().flatten()])
            prefix = len(kept)
            free = layer.rank - prefix
            if settings.grow_network:
                earlier = [self.task_identifiers[t][layer_index] for t in range(index)]
                free = grown_free_rank(free, earlier, self.initial_ranks[layer_index], settings.dataset)
            self.refill(layer, kept, prefix + free)
            identifiers.append(prefix)
        self.task_identifiers[index] = identifiers
        self.task_name_count[task] = index
        self.chann_used[index] = [now - before for now, before in zip(identifiers, start)]
        log.info("task %s: components used %s, ranks now %s", task, identifiers, [l.rank for l in self.layers])

    @staticmethod
    def refill(layer: SVD_Conv2d, kept: torch.Tensor, rank: int) -> None:
        """Components ``kept`` first, in order, then ``rank − len(kept)`` fresh random ones
        (``SVD_Conv2d.fresh_components``, drawn as the published code draws them)."""
        N, C, Sigma = layer.fresh_components(rank - len(kept))
        layer.set_components(torch.cat([layer.N[:, kept], N], 1), torch.cat([layer.C[kept], C]),
                             torch.cat([layer.Sigma[kept], Sigma]))

    # --- evaluation -----------------------------------------------------------------------------------------
    def eval_ranks(self, task: str) -> Optional[List[int]]:
        """A trained task's own prefix of components. A task never trained on its own (before its turn, or after
        ``--offline_training``) uses every component kept so far, never the fresh random ones; with none kept yet,
        every component."""
        if task in self.task_name_count:
            return self.task_identifiers[self.task_name_count[task]]
        return self.frozen_prefix if self.task_identifiers else None

    # --- state ----------------------------------------------------------------------------------------------
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
        """Size from the components the tasks used (``agents.model_size.cacl_model_size_mb``)."""
        layers = [(layer.fan_in, layer.output_channel) for layer in self.layers]
        heads = sum(p.numel() for p in self.model.last.parameters())
        batchnorm = [layer.num_features for layer in batchnorm_layers(self.model)]
        return cacl_model_size_mb(layers, self.chann_used, heads, batchnorm)
