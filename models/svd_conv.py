"""A convolution stored as a singular value decomposition, ``W = N · diag(|Σ|) · C``."""
import math
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def default_rank(input_channel: int, output_channel: int, kernel_size: int) -> int:
    """Rank at which the factors hold as many numbers as the dense kernel.

    ``r = int(in·k·k·out / (out + in·k·k))``.
    """
    fan_in = input_channel * kernel_size * kernel_size
    return int(fan_in * output_channel / (output_channel + fan_in))


def init_components(N: torch.Tensor, C: torch.Tensor, Sigma: torch.Tensor) -> None:
    """Fresh random components in place: ``kaiming_normal_`` on N and C, ``normal_`` on Sigma, in that order; none
    drawn for zero components."""
    if Sigma.numel() == 0:
        return
    with torch.no_grad():
        nn.init.kaiming_normal_(N)
        nn.init.kaiming_normal_(C)
        nn.init.normal_(Sigma)


class SVD_Conv2d(nn.Module):
    """2-D convolution whose kernel is composed from singular components.

    Parameters ``N`` (out × r), ``C`` (r × in·k·k) and ``Sigma`` (r). With ``s = |Sigma|`` the kernel is
    ``W = (N · diag(√s)) @ (diag(√s) · C)`` reshaped to (out, in, k, k), followed by an ordinary ``conv2d``.

    ``forward(x, rank=k)`` uses only the first ``k`` components (a prefix). Without a prefix, training mode uses
    every component and eval mode those whose Sigma is non-zero (which gives the same kernel).

    An optional shortcut gives the same kernels up to floating-point rounding, set and cleared by its user:
    ``set_constant_prefix(k)``: the first ``k`` components are a constant kernel ``K``, composed once; training mode
    without a prefix then composes ``W = K + N[:, k:] · diag(|Σ[k:]|) · C[k:]``, so its cost and its gradients
    concern the other components only (none reaches the first ``k``). Prefixes and eval mode are unaffected.
    """

    def __init__(self, input_channel: int, output_channel: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = False, rank: Optional[int] = None):
        super().__init__()
        self.input_channel = input_channel
        self.output_channel = output_channel
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.initial_rank = default_rank(input_channel, output_channel, kernel_size) if rank is None else rank
        fan_in = input_channel * kernel_size * kernel_size
        self.N = nn.Parameter(torch.empty(output_channel, self.initial_rank))
        self.C = nn.Parameter(torch.empty(self.initial_rank, fan_in))
        self.Sigma = nn.Parameter(torch.empty(self.initial_rank))
        if bias:
            bound = 1 / math.sqrt(fan_in)
            self.bias = nn.Parameter(torch.empty(output_channel).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
        init_components(self.N, self.C, self.Sigma)
        self.constant_prefix = 0
        self.register_buffer("constant_kernel", None, persistent=False)

    @property
    def rank(self) -> int:
        return self.Sigma.shape[0]

    @property
    def formula_rank(self) -> int:
        """``default_rank`` of this layer's shape (the rank it starts with unless built with another)."""
        return default_rank(self.input_channel, self.output_channel, self.kernel_size)

    @property
    def fan_in(self) -> int:
        return self.C.shape[1]

    def fresh_components(self, rank: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``rank`` new random components (N, C, Sigma) as the published code draws them: ``kaiming_normal_`` of an
        (out × rank) N, then of a (rank × in·k·k) C, then ``normal_`` of Sigma, each on the CPU generator (so CPU and
        CUDA runs of one seed draw the same), moved to this layer's device."""
        N = torch.empty(self.output_channel, rank, dtype=self.N.dtype)
        C = torch.empty(rank, self.fan_in, dtype=self.C.dtype)
        Sigma = torch.empty(rank, dtype=self.Sigma.dtype)
        init_components(N, C, Sigma)
        device = self.N.device
        return N.to(device), C.to(device), Sigma.to(device)

    def set_components(self, N: torch.Tensor, C: torch.Tensor, Sigma: torch.Tensor) -> None:
        """Replace the components (the rank may change); new ``Parameter`` objects are created."""
        if N.shape[1] != C.shape[0] or C.shape[0] != Sigma.shape[0]:
            raise ValueError(f"inconsistent ranks: N {tuple(N.shape)}, C {tuple(C.shape)}, Sigma {tuple(Sigma.shape)}")
        self.N = nn.Parameter(N.detach().clone())
        self.C = nn.Parameter(C.detach().clone())
        self.Sigma = nn.Parameter(Sigma.detach().clone())
        self.set_constant_prefix(0)

    def set_constant_prefix(self, k: int) -> None:
        """Treat the first ``k`` components as the constant kernel ``K`` composed now (``k = 0`` clears it).

        Until cleared, the caller keeps those components unchanged (``set_components`` clears it).
        """
        if not 0 <= k <= self.rank:
            raise ValueError(f"constant prefix {k} outside 0..{self.rank}")
        self.constant_prefix = k
        if k == 0:
            self.constant_kernel = None
        else:
            with torch.no_grad():
                self.constant_kernel = self.compose(self.N[:, :k], self.C[:k], self.Sigma[:k])

    def compose(self, N: torch.Tensor, C: torch.Tensor, Sigma: torch.Tensor) -> torch.Tensor:
        """``(N · diag(√|Σ|)) @ (diag(√|Σ|) · C)`` as a kernel (out, in, k, k)."""
        root = Sigma.abs().sqrt()
        weight = (N * root) @ (root.unsqueeze(1) * C)
        return weight.view(self.output_channel, self.input_channel, self.kernel_size, self.kernel_size)

    def composed_weight(self, rank: Optional[int] = None) -> torch.Tensor:
        """The dense kernel (out, in, k, k) from the first ``rank`` components (see the class docstring)."""
        N, C, Sigma = self.N, self.C, self.Sigma
        if rank is not None:
            N, C, Sigma = N[:, :rank], C[:rank], Sigma[:rank]
        elif not self.training:
            used = Sigma != 0
            N, C, Sigma = N[:, used], C[used], Sigma[used]
        elif self.constant_kernel is not None:
            k = self.constant_prefix
            return self.constant_kernel + self.compose(N[:, k:], C[k:], Sigma[k:])
        return self.compose(N, C, Sigma)

    def forward(self, x: torch.Tensor, rank: Optional[int] = None) -> torch.Tensor:
        return F.conv2d(x, self.composed_weight(rank), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.input_channel}, {self.output_channel}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}, rank={self.rank}")


def svd_layers(model: nn.Module) -> list:
    """The model's ``SVD_Conv2d`` layers in registration (= forward) order."""
    return [m for m in model.modules() if isinstance(m, SVD_Conv2d)]


def with_prefix_lengths(layers: Iterable[nn.Module],
                        ranks: Optional[Sequence[int]]) -> Iterator[Tuple[nn.Module, Optional[int]]]:
    """Each of ``layers`` in order with the prefix length it uses: the next of ``ranks`` for an ``SVD_Conv2d``
    (None when ``ranks`` is None: every component), None for any other layer. ``ranks`` not of one length per SVD
    layer is a ``ValueError``."""
    remaining = iter(ranks) if ranks is not None else None
    for layer in layers:
        k = None
        if isinstance(layer, SVD_Conv2d) and remaining is not None:
            k = next(remaining, None)
            if k is None:
                raise ValueError(f"{len(ranks)} prefix lengths for more SVD layers")
        yield layer, k
    if remaining is not None and next(remaining, None) is not None:
        raise ValueError(f"{len(ranks)} prefix lengths for fewer SVD layers")


def state_ranks(state: Mapping[str, torch.Tensor]) -> list:
    """Rank of every SVD layer of a state dict (the length of each ``*.Sigma``), in order."""
    return [tensor.shape[0] for key, tensor in state.items() if key.endswith(".Sigma")]
