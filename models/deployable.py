"""A task's network in its plainest runnable form: only ``torch.nn`` layers, no SVD code.

Each ``SVD_Conv2d`` used through its first ``k`` components becomes (``uses_two_convolutions``: the form the device
the network runs on runs faster; on the CPU whichever costs fewer multiply-adds, with a margin for the second
convolution's memory traffic; on CUDA always the first) either

- one dense convolution with the composed kernel ``W = (N_k · diag(√|Σ_k|)) @ (diag(√|Σ_k|) · C_k)``, or
- two convolutions: a ``k_h × k_w`` one with the ``k`` filters ``diag(√|Σ_k|) · C_k`` (the layer's stride and
  padding), then a 1×1 one from ``N_k · diag(√|Σ_k|)`` (the layer's bias, if any).

A BatchNorm right after a convolution is folded into it; dropout, the identity at inference, is left out. Evaluation
(``NormalNN.evaluate``) and export (``deployment.export``) run these networks.
"""
import copy
from typing import Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.utils import skip_init
from torch.utils.flop_counter import FlopCounterMode

from models.svd_conv import SVD_Conv2d, with_prefix_lengths


TWO_CONVOLUTIONS_AT_MOST = {"cpu": 0.75, "cuda": 0.0}
"""By device type: two convolutions are used when they cost at most this fraction of one dense convolution's
multiply-adds. ``cpu``: the count leaves out that the second convolution reads back the intermediate k-channel map;
measured on a CPU (oneDNN, one thread), two convolutions at 0.8-0.9 of the dense count ran up to 60% slower than the
dense one, at 0.7 faster. ``cuda``: never; on an H200 (``docs/gpu_check_h200.json``, benchmark rows 4b/4c) a pruned
task with two thin convolutions in every layer, at 0.15 of the dense multiply-adds, evaluated at 0.60 of the dense
network's speed: a GPU's time for a network this small goes to launching kernels, and two convolutions are two
launches (the GPU check measures both forms: ``eval_forms``). Other devices take the CPU's rule."""


def multiply_adds_per_position(fan_in: int, out: int, k: int) -> Tuple[int, int]:
    """Multiply-adds per output position of a layer with ``k`` components of an ``out × fan_in`` kernel
    (``fan_in = in·k_h·k_w``): ``(out · fan_in, k · (fan_in + out))``, as one dense convolution and as two."""
    return out * fan_in, k * (fan_in + out)


def uses_two_convolutions(fan_in: int, out: int, k: int, device_type: str) -> bool:
    """The rule choosing a layer's form for a network that runs on ``device_type``: two convolutions when ``0 < k``
    and ``k · (fan_in + out) ≤ a · out · fan_in`` with ``a = TWO_CONVOLUTIONS_AT_MOST[device_type]`` (0.75 on the
    CPU; 0 on CUDA, where one composed kernel always runs faster); one dense convolution otherwise (with ``k = 0``
    the kernel is zero, and a convolution needs a filter)."""
    dense, factored = multiply_adds_per_position(fan_in, out, k)
    fraction = TWO_CONVOLUTIONS_AT_MOST.get(device_type, TWO_CONVOLUTIONS_AT_MOST["cpu"])
    return 0 < k and factored <= fraction * dense


def plain_convolution(layer: SVD_Conv2d, k: int, form_device: Optional[str] = None) -> nn.Module:
    """``layer`` through its first ``k`` components as an ``nn.Conv2d``, or an ``nn.Sequential`` of the two
    convolutions when ``uses_two_convolutions`` for ``form_device`` (a device type; None: the layer's own device's),
    see the module docstring; on the layer's device and dtype. No random number is drawn (the convolutions are made
    with ``skip_init``), so evaluating never changes training."""
    N, C, Sigma = layer.N[:, :k].detach(), layer.C[:k].detach(), layer.Sigma[:k].detach()
    cin, out, size = layer.input_channel, layer.output_channel, layer.kernel_size
    where = {"device": N.device, "dtype": N.dtype}
    has_bias = layer.bias is not None
    if uses_two_convolutions(layer.fan_in, out, k, form_device or N.device.type):
        root = Sigma.abs().sqrt()
        filters = skip_init(nn.Conv2d, cin, k, size, layer.stride, layer.padding, bias=False, **where)
        mixing = skip_init(nn.Conv2d, k, out, 1, bias=has_bias, **where)
        weights = {filters: (root.unsqueeze(1) * C).view(k, cin, size, size), mixing: (N * root).view(out, k, 1, 1)}
        form = nn.Sequential(filters, mixing)
    else:
        form = skip_init(nn.Conv2d, cin, out, size, layer.stride, layer.padding, bias=has_bias, **where)
        weights = {form: layer.compose(N, C, Sigma)}
    with torch.no_grad():
        for convolution, weight in weights.items():
            convolution.weight.copy_(weight)
        if has_bias:
            last_convolution(form).bias.copy_(layer.bias)
    return form


def last_convolution(form: nn.Module) -> Optional[nn.Conv2d]:
    """The convolution whose outputs ``form`` returns (``form`` itself, or the last of a ``Sequential``), if any."""
    if isinstance(form, nn.Sequential) and len(form) > 0:
        form = form[-1]
    return form if isinstance(form, nn.Conv2d) else None


@torch.no_grad()
def fold_batchnorm(form: nn.Module, batchnorm: nn.BatchNorm2d) -> nn.Module:
    """``form`` followed by ``batchnorm`` (with its running statistics) as one: with ``s = γ / √(var + ε)`` the last
    convolution's weight becomes ``s · W`` and its bias ``s · (b − mean) + β``. Changes ``form`` and returns it."""
    convolution = last_convolution(form)
    scale = (batchnorm.running_var + batchnorm.eps).rsqrt()
    shift = torch.zeros_like(scale) if batchnorm.bias is None else batchnorm.bias
    if batchnorm.weight is not None:
        scale = scale * batchnorm.weight
    bias = torch.zeros_like(scale) if convolution.bias is None else convolution.bias
    convolution.weight.mul_(scale.view(-1, 1, 1, 1))
    convolution.bias = nn.Parameter(scale * (bias - batchnorm.running_mean) + shift)
    return form


def task_network(layers: Iterable[nn.Module], ranks: Optional[Sequence[int]], head: nn.Module,
                 form_device: Optional[str] = None) -> nn.Sequential:
    """The network of one task: ``layers`` (a model's feature layers, in order) with the ``i``-th ``SVD_Conv2d``
    through its first ``ranks[i]`` components (``None``: all of them; components whose Σ is zero add nothing) as
    ``plain_convolution`` (each layer's form the one ``form_device`` runs faster; None: the layers' own device),
    BatchNorms folded, dropout left out, then a flatten and a copy of ``head``; in eval mode, without gradients. The
    model's BatchNorm statistics at the time of the call are the ones folded in."""
    plain = []
    for layer, k in with_prefix_lengths(layers, ranks):
        if isinstance(layer, SVD_Conv2d):
            plain.append(plain_convolution(layer, layer.rank if k is None else k, form_device))
        elif isinstance(layer, nn.BatchNorm2d) and plain and last_convolution(plain[-1]) is not None:
            plain[-1] = fold_batchnorm(plain[-1], layer)
        elif not isinstance(layer, nn.modules.dropout._DropoutNd):
            plain.append(copy.deepcopy(layer))
    network = nn.Sequential(*plain, nn.Flatten(), plain_head(head)).eval()
    return network.requires_grad_(False)


def plain_head(head: nn.Module) -> nn.Module:
    """A copy of a task's head as ``task_network`` ends with it: in eval mode, without gradients."""
    return copy.deepcopy(head).eval().requires_grad_(False)


def two_convolution_layers(layers: Iterable[nn.Module], ranks: Optional[Sequence[int]]) -> List[bool]:
    """For each ``SVD_Conv2d`` of ``layers`` through its prefix of ``ranks`` (None: all of its components): whether
    ``task_network`` makes it two convolutions on the layer's device (``uses_two_convolutions``)."""
    return [uses_two_convolutions(layer.fan_in, layer.output_channel, layer.rank if k is None else k,
                                  layer.N.device.type)
            for layer, k in with_prefix_lengths(layers, ranks) if isinstance(layer, SVD_Conv2d)]


def count_multiply_adds(network: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of ``network`` on one input of ``input_shape`` (C, H, W): half the FLOPs
    ``torch.utils.flop_counter`` counts (convolutions and matrix products; pooling, ReLU and additions of biases
    are not counted)."""
    parameter = next(network.parameters())
    example = torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(example)
    return counter.get_total_flops() // 2
