"""A feature extractor with one output head per task, ``last[task]``."""
from typing import Mapping, Optional, Sequence

import torch
from torch import nn


class MultiHeadNet(nn.Module):
    """Base of every model: subclasses define ``features(x, ranks)`` and ``n_feat``; heads live in ``self.last``.

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
