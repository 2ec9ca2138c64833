"""``SVDNet``: CACL. Sparse singular values and orthogonal factors while training; prune, freeze and refill after.

``--agent_type SVDNet --agent_name SVDNet`` (the default) on a model of ``SVD_Conv2d`` layers. Its flags are
``SVDNetSettings``'s fields (the published names and defaults); ``--sparse_wt`` takes several values, one
experiment ``<exp_name>_sparse_wt<w>`` each. Its saved model is the published folder: ``final_model.pth``,
``rank.pth``, ``task_identifiers.pth``, ``task_name_count.pth``, ``chann_used.pth`` and, with
``--save_running_stats``, ``batchnorm.pth``.
"""
import copy
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from agents.batchnorm import BATCHNORM_BUFFERS, batchnorm_layers
from agents.compression import GROW_TO_MEAN_DATASETS, grown_free_rank, prune_by_energy
from agents.default import MODEL_FILE, LoopSettings, NormalNN
from agents.freezing import FrozenPrefix
from agents.model_size import cacl_model_size_mb
from agents.regularizers import SPARSITY_REGULARIZERS, FrozenTerms, cacl_terms
from models import DENSE_FORMS, svd_layers
from models.multihead import MultiHeadNet
from models.svd_conv import SVD_Conv2d
from utils.errors import UserError
from utils.files import atomic_torch_save, read_state
from utils.flags import at_least_zero, flag, inside_zero_one

log = logging.getLogger(__name__)

NEEDS_SVD_LAYERS = ("the SVDNet agent needs a model with SVD layers: use --model_type customnet_SVD --model_name "
                    "Net_SVD, or --agent_type default --agent_name NormalNN for a dense model")
NEGATIVE_WEIGHT = "must be 0 or more (a negative weight rewards what the loss penalises)"

STATE_FILES = {"rank": "rank.pth", "task_identifiers": "task_identifiers.pth",
               "task_name_count": "task_name_count.pth", "chann_used": "chann_used.pth"}
"""The published files beside ``final_model.pth``: each SVD layer's rank; {task index: prefix length per layer};
{task name: task index}; {task index: components added per layer}."""
BATCHNORM_FILE = "batchnorm.pth"
"""Written with ``--save_running_stats`` (published): {task index: [[running_var, running_mean, num_batches_tracked]
for each BatchNorm layer in module order]}."""


@dataclass
class SVDNetSettings(LoopSettings):
    """CACL's own flags, with the published names and defaults."""

    sparse_wt: float = flag(0.01, "weight of the sparsity loss of the singular values", sweep=True,
                            valid=at_least_zero, requirement=NEGATIVE_WEIGHT)
    perp_wt: float = flag(1.0, "weight of the orthogonality loss of N and C", valid=at_least_zero,
                          requirement=NEGATIVE_WEIGHT)
    energy_sv: float = flag(3e-5, "energy fraction of a task's new components pruned", "-e", "--energy_sv",
                            valid=inside_zero_one, requirement="must lie in (0, 1)")
    reg_type_svd: str = flag("Hoyer", "sparsity loss on singular values: " + ", ".join(SPARSITY_REGULARIZERS),
                             valid=SPARSITY_REGULARIZERS.__contains__,
                             requirement=f"must be one of {', '.join(SPARSITY_REGULARIZERS)}")
    prev_sing: bool = flag(False, "count the frozen components' energy when pruning")
    grow_network: bool = flag(False, "add components when a layer runs short of free ones")
    grow_to_mean: bool = False
    """``--grow_network`` grows a layer to the mean of its earlier identifiers (on ``GROW_TO_MEAN_DATASETS``), not
    to its initial rank (``agents.compression.grown_free_rank``)."""


class SVDNet(NormalNN):
    """CACL (Compression-aware Continual Learning) on a model made of ``SVD_Conv2d`` layers.

    Continual-learning state: ``task_identifiers`` {task index: prefix length per SVD layer} (cumulative),
    ``task_index`` {task name: task index} (the published ``task_name_count``) and ``chann_used`` {task index:
    components added per layer}.
    """

    Settings = SVDNetSettings
    title = "CACL"
    prunes_after_task = True

    def __init__(self, model: MultiHeadNet, settings: SVDNetSettings):
        super().__init__(model, settings)
        self.layers = svd_layers(self.model)
        if not self.layers:
            raise UserError(NEEDS_SVD_LAYERS)
        self.sparsity = SPARSITY_REGULARIZERS[settings.reg_type_svd]
        self.initial_ranks = [layer.rank for layer in self.layers]
        self.task_identifiers: Dict[int, List[int]] = {}
        self.task_index: Dict[str, int] = {}
        self.chann_used: Dict[int, List[int]] = {}
        self.frozen: Optional[FrozenPrefix] = None
        self.frozen_terms: Optional[FrozenTerms] = None

    @classmethod
    def check_model(cls, model_type: str, model_name: str) -> None:
        """CACL needs a model of SVD layers (one with a dense twin in ``models.DENSE_FORMS``)."""
        if model_name not in DENSE_FORMS:
            raise UserError(NEEDS_SVD_LAYERS)

    @classmethod
    def make_settings(cls, flags: Mapping[str, Any], swept: Mapping[str, Any], device: torch.device) -> SVDNetSettings:
        """The flags' settings; the growth target follows ``--dataset`` (``GROW_TO_MEAN_DATASETS``), as published."""
        settings = super().make_settings(flags, swept, device)
        settings.grow_to_mean = flags["dataset"] in GROW_TO_MEAN_DATASETS
        return settings

    @property
    def frozen_prefix(self) -> List[int]:
        """Components of each layer that belong to earlier tasks (the last task's identifiers)."""
        if not self.task_identifiers:
            return [0] * len(self.layers)
        return list(self.task_identifiers[len(self.task_identifiers) - 1])

    # --- training -------------------------------------------------------------------------------------------
    def freeze(self, task: str) -> None:
        """CACL's freezing rule, whole. While ``task`` trains:

        - the first ``k_l`` components of each SVD layer ``l`` (``k`` = ``frozen_prefix``, the components kept by
          earlier tasks) are written back after every optimizer step (``after_step``), so they stay bit-identical
          under any optimizer; their kernel is composed once and their share of the regularizers computed once;
        - BatchNorm affine parameters train with the first task only (``trainable_parameters``);
        - other tasks' heads are not given to the optimizer (``NormalNN.trainable_parameters``).
        """
        self.release()
        prefix = self.frozen_prefix
        self.frozen = FrozenPrefix(self.layers, prefix)
        self.frozen_terms = FrozenTerms(self.layers, prefix)

    def trainable_parameters(self, task: str) -> List[nn.Parameter]:
        parameters = super().trainable_parameters(task)
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
                free = grown_free_rank(free, earlier, self.initial_ranks[layer_index], settings.grow_to_mean)
            self.refill(layer, kept, prefix + free)
            identifiers.append(prefix)
        self.task_identifiers[index] = identifiers
        self.task_index[task] = index
        self.chann_used[index] = [now - before for now, before in zip(identifiers, start)]
        log.info("task %s: components used %s, ranks now %s", task, identifiers, [l.rank for l in self.layers])

    @staticmethod
    def refill(layer: SVD_Conv2d, kept: torch.Tensor, rank: int) -> None:
        """Components ``kept`` first, in order, then ``rank − len(kept)`` fresh random ones
        (``SVD_Conv2d.fresh_components``, drawn as the published code draws them)."""
        N, C, Sigma = layer.fresh_components(rank - len(kept))
        layer.set_components(torch.cat([layer.N[:, kept], N], 1), torch.cat([layer.C[kept], C]),
                             torch.cat([layer.Sigma[kept], Sigma]))

    def pruned_copy(self, task: str, strength: float) -> "SVDNet":
        """A copy in which ``task``, trained but not yet pruned, is pruned at ``energy_sv = strength``."""
        pruned = copy.deepcopy(self)
        pruned.settings.energy_sv = strength
        pruned.end_task(task)
        return pruned

    # --- evaluation -----------------------------------------------------------------------------------------
    def task_ranks(self, task: str) -> Optional[List[int]]:
        """A trained task's own prefix of components. A task never trained on its own (before its turn, or after
        ``--offline_training``) uses every component kept so far, never the fresh random ones; with none kept yet,
        every component."""
        if task in self.task_index:
            return self.task_identifiers[self.task_index[task]]
        return self.frozen_prefix if self.task_identifiers else None

    # --- state ----------------------------------------------------------------------------------------------
    def continual_state(self) -> Dict[str, Any]:
        return {"initial_ranks": list(self.initial_ranks), "task_identifiers": self.task_identifiers,
                "task_name_count": self.task_index, "chann_used": self.chann_used}

    def load_continual_state(self, state: Mapping[str, Any]) -> None:
        """The identifiers, task indices and components used (a checkpoint's or a saved model's; the published
        files give their keys as tensors or strings), and the initial ranks where the state has them."""
        self.task_identifiers = {int(k): list(v) for k, v in state["task_identifiers"].items()}
        self.task_index = {str(k): int(v) for k, v in state["task_name_count"].items()}
        self.chann_used = {int(k): list(v) for k, v in state["chann_used"].items()}
        self.tasks_trained = sorted(self.task_index, key=self.task_index.get)
        if "initial_ranks" in state:
            self.initial_ranks = list(state["initial_ranks"])

    # --- outputs --------------------------------------------------------------------------------------------
    def units_added(self) -> Dict[int, List[int]]:
        """``chann_used``: the components each task added to each SVD layer."""
        return self.chann_used

    def results_keys(self) -> Dict[str, Any]:
        """``all_rank``: each SVD layer's rank by the formula (as published: divide by it for compression ratios);
        ``final_rank``: each layer's rank at the end."""
        return {"all_rank": [layer.formula_rank for layer in self.layers],
                "final_rank": [layer.rank for layer in self.layers]}

    def model_size_mb(self) -> float:
        """Size from the components the tasks used (``agents.model_size.cacl_model_size_mb``)."""
        layers = [(layer.fan_in, layer.output_channel) for layer in self.layers]
        heads = sum(p.numel() for p in self.model.last.parameters())
        batchnorm = [layer.num_features for layer in batchnorm_layers(self.model)]
        return cacl_model_size_mb(layers, self.chann_used, heads, batchnorm)

    # --- saved models ---------------------------------------------------------------------------------------
    def save(self, directory: str) -> None:
        """The published folder (each file written atomically): ``final_model.pth``, ``STATE_FILES`` and, with
        per-task BatchNorm statistics, ``BATCHNORM_FILE``."""
        super().save(directory)
        pieces = {"rank": [layer.rank for layer in self.layers], "task_identifiers": self.task_identifiers,
                  "task_name_count": self.task_index, "chann_used": self.chann_used}
        files = {STATE_FILES[name]: value for name, value in pieces.items()}
        if self.running_stats:
            files[BATCHNORM_FILE] = {self.task_index[task]: [[layer[name] for name in BATCHNORM_BUFFERS]
                                                             for layer in layers]
                                     for task, layers in self.running_stats.items()}
        for name, value in files.items():
            atomic_torch_save(value, os.path.join(directory, name))

    def load_saved(self, directory: str) -> None:
        """The state ``save`` (or the published code) wrote beside ``final_model.pth``, checked against the model."""
        pieces = {name: read_piece(directory, file) for name, file in STATE_FILES.items()}
        ranks = [layer.rank for layer in self.layers]
        if list(pieces["rank"]) != ranks:
            raise UserError(f"{directory}/{STATE_FILES['rank']} {list(pieces['rank'])} disagrees with the ranks of "
                            f"{MODEL_FILE} {ranks}")
        self.load_continual_state(pieces)
        path = os.path.join(directory, BATCHNORM_FILE)
        if os.path.isfile(path):
            self.load_running_stats(named_statistics(read_state(path), self.task_index, path), path)


def read_piece(directory: str, name: str):
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {directory} lacks {name} (a CACL checkpoint holds {MODEL_FILE} and "
                        f"{', '.join(STATE_FILES.values())})")
    return read_state(path)


def named_statistics(by_index, task_index: Mapping[str, int], source) -> Dict[str, List[Dict[str, torch.Tensor]]]:
    """``batchnorm.pth``'s {task index: [[running_var, running_mean, num_batches_tracked], ...]} as {task name:
    [{buffer name: tensor}, ...]}; a one-line error when it is not of that shape."""
    names = {index: task for task, index in task_index.items()}
    try:
        return {names[int(index)]: [dict(zip(BATCHNORM_BUFFERS, buffers, strict=True)) for buffers in layers]
                for index, layers in by_index.items()}
    except (AttributeError, KeyError, TypeError, ValueError):
        raise UserError(f"{source} is not a BatchNorm statistics file of this checkpoint's tasks ({{task index: "
                        f"[[running_var, running_mean, num_batches_tracked] per BatchNorm layer]}})") from None
