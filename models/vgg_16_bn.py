"""VGG-16 with BatchNorm for 32×32 inputs (configuration D), dense or with every convolution factorized."""
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

from models.multihead import MultiHeadNet, apply_layers, layer_ranks
from models.svd_conv import SVD_Conv2d

BUILDERS = ("vgg16_bn_cifar100", "vgg16_bn_cifar100_SVD")

# Output channels of each 3×3 convolution (padding 1, then BatchNorm and ReLU); "M" is a 2×2 max-pool.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
HEAD_HIDDEN = 32


def feature_size(image_size: int) -> int:
    """Spatial positions left after the five max-pools: 1 for 32×32 inputs."""
    side = image_size
    for item in VGG16_CFG:
        if item == "M":
            side //= 2
    return side * side


def make_layers(cfg: Sequence, conv: Callable[[int, int], nn.Module]) -> nn.Sequential:
    """``conv(in, out)`` + BatchNorm + ReLU for each number of ``cfg``, a max-pool for each ``"M"``."""
    layers, channels = [], 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [conv(channels, item), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)


class VGG(MultiHeadNet):
    """``features`` from ``make_layers``, flattened; each task's head is ``Linear(n_feat, 32) → Linear(32, n)``."""

    def __init__(self, conv: Callable[[int, int], nn.Module], size: int = 1):
        super().__init__()
        self.features_layers = make_layers(VGG16_CFG, conv)
        self.n_feat = VGG16_CFG[-2] * size
        self.last = nn.ModuleDict()
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def make_head(self, n_classes: int) -> nn.Module:
        return nn.Sequential(nn.Linear(self.n_feat, HEAD_HIDDEN), nn.Linear(HEAD_HIDDEN, n_classes))

    def feature_layers(self) -> List[nn.Module]:
        return list(self.features_layers)

    def features(self, x: torch.Tensor, ranks: Optional[Sequence[int]] = None) -> torch.Tensor:
        return apply_layers(self.feature_layers(), x, ranks).flatten(1)


def vgg16_bn_cifar100(size: int = 1) -> VGG:
    """Dense VGG-16-BN: 3×3 convolutions with padding 1 and no bias."""
    return VGG(lambda cin, cout: nn.Conv2d(cin, cout, 3, padding=1, bias=False), size)


def vgg16_bn_cifar100_SVD(rank: Optional[Sequence[int]] = None, size: int = 1) -> VGG:
    """VGG-16-BN with ``SVD_Conv2d`` convolutions of the given ranks (default ranks when None)."""
    ranks = layer_ranks(rank, sum(item != "M" for item in VGG16_CFG), "vgg16_bn_cifar100_SVD")
    return VGG(lambda cin, cout: SVD_Conv2d(cin, cout, 3, padding=1, rank=next(ranks)), size)
