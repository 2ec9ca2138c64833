"""A feature extractor with one output head per task, ``last[task]``."""
from typing import Dict, Iterable, Iterator, Mapping, Optional, Sequence

import torch
from torch import nn

from models.svd_conv import SVD_Conv2d, with_prefix_lengths
from utils.errors import UserError

ALL_TASKS = "All"
"""The head every task shares under ``--force_out_dim``, and the name of the joint task of ``--offline_training``."""


def layer_ranks(rank: Optional[Sequence[int]], n_layers: int, model_name: str) -> Iterator[Optional[int]]:
    """One rank per SVD layer, in order: the given ones, or None (each layer's default) when ``rank`` is empty."""
    if rank and len(rank) != n_layers:
        raise ValueError(f"{model_name} has {n_layers} SVD layers, got {len(rank)} ranks")
    return iter(rank) if rank else iter([None] * n_layers)


def apply_layers(layers: Iterable[nn.Module], x: torch.Tensor, ranks: Optional[Sequence[int]]) -> torch.Tensor:
    """Run ``layers`` in order, giving each ``SVD_Conv2d`` the next prefix length of ``ranks`` (None: all)."""
    for layer, k in with_prefix_lengths(layers, ranks):
        x = layer(x, k) if isinstance(layer, SVD_Conv2d) else layer(x)
    return x


def head_sizes(state: Mapping[str, torch.Tensor]) -> Dict[str, int]:
    """Outputs of every head of a state dict, ``{name: rows of the last weight of last.<name>}``."""
    sizes = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "last" and parts[-1] == "weight":
            sizes[parts[1]] = tensor.shape[0]
    return sizes


class MultiHeadNet(nn.Module):
    """Base of every model: subclasses define ``feature_layers()`` (their layers in order), ``features(x, ranks)``
    (those layers, then a flatten) and ``n_feat``; heads live in ``self.last``.

    ``ranks`` is one prefix length per SVD layer (``None``: every component); dense models accept only ``None``.
    """

    n_feat: int
    last: nn.ModuleDict

    def make_head(self, n_classes: int) -> nn.Module:
        return nn.Sequential(nn.Linear(self.n_feat, n_classes))

    def add_heads(self, out_dim: Mapping[str, int]) -> None:
        """Add a head ``last[name]`` with ``n`` outputs for every ``name: n`` not present yet."""
        device = next(self.parameters()).device
        for name, n_classes in out_dim.items():
            if name not in self.last:
                self.last[name] = self.make_head(n_classes).to(device)

    def load_checked(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        """``load_state_dict`` with a one-line error naming the first tensor that does not fit."""
        own = self.state_dict()
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if wrong:
            key = wrong[0]
            detail = f"tensor {key} has shape {tuple(state[key].shape)}, the model expects {tuple(own[key].shape)}"
        elif missing:
            detail = f"tensor {missing[0]} is missing"
        elif unexpected:
            detail = f"tensor {unexpected[0]} does not belong to the model"
        else:
            self.load_state_dict(state)
            return
        raise UserError(f"{source} does not fit this model and dataset: {detail}")

    def forward(self, x: torch.Tensor, task: str, ranks: Optional[Sequence[int]] = None) -> torch.Tensor:
        return self.last[task](self.features(x, ranks))
