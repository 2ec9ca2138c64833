"""CACL's end-of-task rules: which new components survive (energy) and how much room the next task gets (growth)."""
from typing import Sequence

import torch


def prune_by_energy(sigma: torch.Tensor, start: int, energy_sv: float, prev_sing: bool = False) -> torch.Tensor:
    """Mask over the new components ``sigma[start:]``: True for the ones that are kept.

    With ``e`` the squares of the new singular values sorted in descending order and ``E = Σ e`` their energy,
    ``n`` is the smallest count (at least one) with ``E₀ + e₁ + … + eₙ ≥ (1 − energy_sv) · E`` where ``E₀ = 0``.
    With ``prev_sing`` the frozen components ``sigma[:start]`` count too: ``E₀`` is their energy and is added to ``E``.
    A new component is kept when ``|σ| ≥ √eₙ`` (ties with the threshold are kept).
    """
    new_energy = sigma[start:].detach().double() ** 2
    if new_energy.numel() == 0 or new_energy.sum() == 0:
        return torch.zeros_like(new_energy, dtype=torch.bool)
    ordered = torch.sort(new_energy, descending=True).values
    base = (sigma[:start].detach().double() ** 2).sum() if prev_sing else new_energy.new_zeros(())
    total = ordered.sum() + base
    reached = (base + torch.cumsum(ordered, 0)) >= (1 - energy_sv) * total
    count = int(reached.nonzero()[0]) + 1 if reached.any() else ordered.numel()
    return new_energy >= ordered[count - 1]


GROW_TO_MEAN_DATASETS = ("CIFAR100", "miniImageNet")
"""Datasets on which ``--grow_network`` grows a layer to the mean of its earlier identifiers (published rule)."""


def grown_free_rank(free: int, earlier_identifiers: Sequence[int], initial_rank: int, dataset: str) -> int:
    """Number of fresh components a layer gets for the next task under ``--grow_network``.

    ``target`` is the mean of the layer's identifiers over the tasks trained before the one just finished, capped at
    the layer's initial rank, on ``GROW_TO_MEAN_DATASETS``; on other datasets it is the initial rank itself. When
    ``free < target`` the free room becomes ``int(target)``; otherwise it stays. Nothing grows after the first task
    (no earlier identifiers).
    """
    if not earlier_identifiers:
        return free
    if dataset in GROW_TO_MEAN_DATASETS:
        target = min(sum(earlier_identifiers) / len(earlier_identifiers), initial_rank)
    else:
        target = initial_rank
    return int(target) if free < target else free
