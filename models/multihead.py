"""A feature extractor with one output head per task, ``last[task]``."""
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import torch
from torch import nn

from models.svd_conv import SVD_Conv2d

ALL_TASKS = "All"
"""The head every task shares under ``--force_out_dim``, and the name of the joint task of ``--offline_training``."""


def layer_ranks(rank: Optional[Sequence[int]], n_layers: int, model_name: str) -> Iterator[Optional[int]]:
    """One rank per SVD layer, in order: the given ones, or None (each layer's default) when ``rank`` is empty."""
    if rank and len(rank) != n_layers:
        raise ValueError(f"{model_name} has {n_layers} SVD layers, got {len(rank)} ranks")
    return iter(rank) if rank else iter([None] * n_layers)


def apply_layers(layers: Iterable[nn.Module], x: torch.Tensor, ranks: Optional[Sequence[int]]) -> torch.Tensor:
    """Run ``layers`` in order, giving each ``SVD_Conv2d`` the next prefix length of ``ranks`` (None: all)."""
    remaining = iter(ranks) if ranks is not None else None
    for layer in layers:
        if isinstance(layer, SVD_Conv2d):
            x = layer(x, next(remaining) if remaining is not None else None)
        else:
            x = layer(x)
    if remaining is not None and next(remaining, None) is not None:
        raise ValueError(f"{len(ranks)} prefix lengths for fewer SVD layers")
    return x


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

    def forward(self, x: torch.Tensor, task: str, ranks: Optional[Sequence[int]] = None) -> torch.Tensor:
        return self.last[task](self.features(x, ranks))
