"""``Net_SVD``: the paper's 5-convolution network with every convolution factorized (``SVD_Conv2d``)."""
from typing import Optional, Sequence

from models.customnet import CUSTOMNET_CFG, CustomNet
from models.multihead import layer_ranks
from models.svd_conv import SVD_Conv2d

BUILDERS = ("Net_SVD",)


def Net_SVD(rank: Optional[Sequence[int]] = None, size: int = 4) -> CustomNet:
    """``CUSTOMNET_CFG`` with ``SVD_Conv2d`` layers of the given ranks (default ranks: [18, 57, 104, 115, 170]).

    ``size`` is the number of spatial positions of the last feature map: 4 for 32×32 inputs, 64 for 84×84.
    """
    ranks = layer_ranks(rank, sum(isinstance(item, tuple) for item in CUSTOMNET_CFG), "Net_SVD")
    return CustomNet(lambda cin, cout, kernel: SVD_Conv2d(cin, cout, kernel, rank=next(ranks)), size)
