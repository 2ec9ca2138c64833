"""CACL's regularizers: sparsity of the singular values and orthogonality of the factors, each with a fast form for
a task whose first components are frozen (their share is computed once per task)."""
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from models.svd_conv import SVD_Conv2d

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



SparsityRegularizer = Callable[[torch.Tensor, Optional[Norms]], torch.Tensor]


def cacl_terms(layers: Sequence[SVD_Conv2d], sparsity: SparsityRegularizer) -> Tuple[torch.Tensor, torch.Tensor]:
    """``Σ_l sparsity(Σ_l)`` and ``Σ_l [orth(N_l) + orth(C_l)]`` over every component of every layer."""
    return (sum(sparsity(layer.Sigma) for layer in layers),
            sum(orthogonality(layer.N) + orthogonality(layer.C) for layer in layers))


class FrozenTerms:
    """``cacl_terms`` for layers whose first ``prefix[l]`` components stay constant during a task: their norms and
    Gram matrices are computed once here, so a step's cost is set by the trainable components."""

    def __init__(self, layers: Sequence[SVD_Conv2d], prefix: Sequence[int]):
        self.prefix = list(prefix)
        self.sigma_norms: List[Optional[Norms]] = []
        self.orthogonality: List[Optional[Tuple[FrozenOrthogonality, FrozenOrthogonality]]] = []
        with torch.no_grad():
            for layer, k in zip(layers, self.prefix):
                frozen = k > 0
                self.sigma_norms.append(norms(layer.Sigma[:k].detach()) if frozen else None)
                self.orthogonality.append((FrozenOrthogonality(layer.N, k, components_on_rows=False),
                                           FrozenOrthogonality(layer.C, k, components_on_rows=True))
                                          if frozen else None)

    def __call__(self, layers: Sequence[SVD_Conv2d],
                 sparsity: SparsityRegularizer) -> Tuple[torch.Tensor, torch.Tensor]:
        """``cacl_terms(layers, sparsity)`` up to floating-point rounding."""
        sparsity_sum, orth_sum = 0, 0
        for layer, k, sigma_norms, frozen_orth in zip(layers, self.prefix, self.sigma_norms, self.orthogonality):
            sparsity_sum = sparsity_sum + sparsity(layer.Sigma[k:], sigma_norms)
            if frozen_orth is None:
                orth_sum = orth_sum + orthogonality(layer.N) + orthogonality(layer.C)
            else:
                orth_sum = orth_sum + frozen_orth[0](layer.N) + frozen_orth[1](layer.C)
        return sparsity_sum, orth_sum
