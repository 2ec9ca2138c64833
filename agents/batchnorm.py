"""Per-task BatchNorm statistics (``--save_running_stats``): taken after a task, used when it is evaluated."""
from typing import Dict, List

import torch
from torch import nn

from utils.errors import UserError

BATCHNORM_BUFFERS = ("running_var", "running_mean", "num_batches_tracked")
"""A BatchNorm layer's statistics, in the order the published ``batchnorm.pth`` lists them."""

Statistics = List[Dict[str, torch.Tensor]]
"""The buffers (``running_mean``, ``running_var``, ``num_batches_tracked``) of every BatchNorm layer, in order."""


def batchnorm_layers(model: nn.Module) -> List[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def batchnorm_statistics(model: nn.Module) -> Statistics:
    """A copy of the model's BatchNorm buffers now."""
    return [{name: buffer.clone() for name, buffer in layer.named_buffers()} for layer in batchnorm_layers(model)]


@torch.no_grad()
def use_batchnorm_statistics(model: nn.Module, statistics: Statistics) -> None:
    for layer, saved in zip(batchnorm_layers(model), statistics):
        for name, buffer in layer.named_buffers():
            buffer.copy_(saved[name])


def checked_statistics(model: nn.Module, statistics: Dict[str, Statistics], source: str,
                       device: torch.device) -> Dict[str, Statistics]:
    """Saved statistics per task, checked against the model's BatchNorm layers and moved to ``device``."""
    own = batchnorm_statistics(model)
    for task, layers in statistics.items():
        fits = len(layers) == len(own) and all(
            set(saved) == set(buffers) and all(saved[name].shape == buffers[name].shape for name in buffers)
            for saved, buffers in zip(layers, own))
        if not fits:
            raise UserError(f"{source}: the BatchNorm statistics of task {task} do not fit this model's "
                            f"{len(own)} BatchNorm layers")
    return {task: [{name: tensor.to(device) for name, tensor in layer.items()} for layer in layers]
            for task, layers in statistics.items()}
