"""The mechanism that keeps earlier tasks' components constant while a later task trains (``SVDNet.freeze`` holds
the rule that uses it)."""
from typing import Sequence

import torch

from models.svd_conv import SVD_Conv2d


class FrozenPrefix:
    """The first ``prefix[l]`` components of each SVD layer ``l``, held constant for one task.

    - ``restore`` writes their saved values back after every optimizer step, so they stay bit-identical under any
      optimizer (weight decay, momentum);
    - their kernel is composed once (``SVD_Conv2d.set_constant_prefix``), so a step's forward and backward cost is
      set by the trainable components;
    - ``release`` (end of the task) gives the layers back their plain composition.
    """

    def __init__(self, layers: Sequence[SVD_Conv2d], prefix: Sequence[int]):
        self.layers = list(layers)
        self.prefix = list(prefix)
        self.slices = []
        for layer, k in zip(self.layers, self.prefix):
            if k > 0:
                self.slices += [(layer.N, (slice(None), slice(0, k))), (layer.C, (slice(0, k),)),
                                (layer.Sigma, (slice(0, k),))]
            layer.set_constant_prefix(k)
        self.saved = [tensor[index].detach().clone() for tensor, index in self.slices]
        self.parameters = [(layer.N, layer.C, layer.Sigma) for layer in self.layers]

    @torch.no_grad()
    def restore(self) -> None:
        for (tensor, index), saved in zip(self.slices, self.saved):
            tensor[index] = saved

    def release(self) -> None:
        for layer in self.layers:
            layer.set_constant_prefix(0)

    def check_layers(self) -> None:
        """A bug guard: the layers still hold the components this prefix was taken from."""
        for layer, (N, C, Sigma) in zip(self.layers, self.parameters):
            if layer.N is not N or layer.C is not C or layer.Sigma is not Sigma:
                raise RuntimeError("an SVD layer's components were replaced during a task")
