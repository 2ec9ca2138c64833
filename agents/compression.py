"""CACL's end-of-task rules: which new components survive (energy) and how much room the next task gets (growth)."""
from typing import Sequence

import torch


def prune_by_energy(sigma: torch.Tensor, start: int, energy_sv: float, prev_sing: bool = False) -> torch.Tensor:
    """Mask over the new components ``sigma[start:]``: True for the ones that are kept (the published rule).

    With ``e₁ ≥ e₂ ≥ …`` the squares of the new singular values, ``T = Σ e`` their energy and ``E = 0`` (with
    ``prev_sing``: ``E`` the frozen components' energy ``Σ σ[:start]²``, added to ``T``), count
    ``while E / T < 1 − energy_sv: E += e_{n+1}; n += 1``. The threshold is ``√e_n``, or 0 when the loop never ran
    (with ``prev_sing``, when the frozen energy alone reaches ``(1 − energy_sv)·T``). A new component is kept when
    ``σ ≠ 0`` and ``|σ| ≥`` the threshold. The arithmetic is the published one: in ``sigma``'s dtype, a ratio
    compared with ``1 − energy_sv``, the energies added one at a time, so a kept energy landing exactly on
    ``(1 − energy_sv)·T`` stops the count there.
    """
    sigma = sigma.detach()
    new = sigma[start:]
    ordered = torch.sort(new ** 2, descending=True).values
    if prev_sing:
        energy, total = (sigma[:start] ** 2).sum(), (sigma ** 2).sum()
    else:
        energy, total = torch.zeros((), dtype=sigma.dtype, device=sigma.device), ordered.sum()
    count = 0
    while count < len(ordered) and bool(energy / total < 1 - energy_sv):
        energy = energy + ordered[count]
        count += 1
    threshold = ordered[count - 1].sqrt() if count else torch.zeros((), dtype=sigma.dtype, device=sigma.device)
    return (new != 0) & (new.abs() >= threshold)


GROW_TO_MEAN_DATASETS = ("CIFAR100", "miniImageNet")
"""Datasets on which ``--grow_network`` grows a layer to the mean of its earlier identifiers (published rule)."""


def grown_free_rank(free: int, earlier_identifiers: Sequence[int], initial_rank: int, grow_to_mean: bool) -> int:
    """Number of fresh components a layer gets for the next task under ``--grow_network``.

    ``target`` is the mean of the layer's identifiers over the tasks trained before the one just finished, capped at
    the layer's initial rank, with ``grow_to_mean`` (the published rule on ``GROW_TO_MEAN_DATASETS``); otherwise the
    initial rank itself. When ``free < target`` the free room becomes ``int(target)``; otherwise it stays. Nothing
    grows after the first task (no earlier identifiers).
    """
    if not earlier_identifiers:
        return free
    if grow_to_mean:
        target = min(sum(earlier_identifiers) / len(earlier_identifiers), initial_rank)
    else:
        target = initial_rank
    return int(target) if free < target else free
