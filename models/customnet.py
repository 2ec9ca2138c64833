"""The paper's 5-convolution network; ``Net`` is its dense form (``customnet_SVD.Net_SVD`` the factorized one)."""
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

from models.multihead import MultiHeadNet, apply_layers

BUILDERS = ("Net",)

# (attribute, in, out, kernel) is a convolution followed by ReLU; "M" max-pool 2, "D" dropout 0.15, "A" avg-pool 2.
CUSTOMNET_CFG = [
    ("conv1", 3, 64, 3), ("conv2", 64, 64, 3), "M", "D",
    ("conv3", 64, 128, 3), ("conv4", 128, 128, 3), "M", "D",
    ("conv6", 128, 256, 2), "A",
]
DROPOUT = 0.15
PARAMETER_FREE_LAYERS = {"M": ("maxpool", lambda: nn.MaxPool2d(2)), "D": ("dropout", lambda: nn.Dropout(DROPOUT)),
                         "A": ("avgpool", lambda: nn.AvgPool2d(2))}


def feature_size(image_size: int) -> int:
    """Spatial positions left after the layers of ``CUSTOMNET_CFG`` for a square input: 4 for 32, 64 for 84; 0 when
    an input is too small to pass them all."""
    side = image_size
    for item in CUSTOMNET_CFG:
        if isinstance(item, tuple):
            side = side - item[3] + 1
        elif item in ("M", "A"):
            side //= 2
        if side < 1:
            return 0
    return side * side


ConvFactory = Callable[[int, int, int], nn.Module]


class CustomNet(MultiHeadNet):
    """The layers of ``CUSTOMNET_CFG`` built with ``conv(in, out, kernel)``, then a flatten and the heads."""

    def __init__(self, conv: ConvFactory, size: int = 4):
        super().__init__()
        self.layer_names = []
        for position, item in enumerate(CUSTOMNET_CFG):
            if isinstance(item, tuple):
                name, cin, cout, kernel = item
                setattr(self, name, conv(cin, cout, kernel))
                setattr(self, f"relu_{name}", nn.ReLU())
                self.layer_names += [name, f"relu_{name}"]
            else:
                kind, make = PARAMETER_FREE_LAYERS[item]
                name = f"{kind}{position}"
                setattr(self, name, make())
                self.layer_names.append(name)
        self.n_feat = CUSTOMNET_CFG[-2][2] * size
        self.last = nn.ModuleDict()

    def feature_layers(self) -> List[nn.Module]:
        return [getattr(self, name) for name in self.layer_names]

    def features(self, x: torch.Tensor, ranks: Optional[Sequence[int]] = None) -> torch.Tensor:
        return apply_layers(self.feature_layers(), x, ranks).flatten(1)


def Net(size: int = 4) -> CustomNet:
    """The dense baseline: ``CUSTOMNET_CFG`` with plain ``nn.Conv2d`` (no padding, with a bias, as published)."""
    return CustomNet(lambda cin, cout, kernel: nn.Conv2d(cin, cout, kernel, bias=True), size)
