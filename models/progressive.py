"""Progressive networks' columns (Rusu et al. 2016) built from a dense network's layers, with the lateral adapters of
``joansj/hat``'s ``src/networks/alexnet_progressive.py`` (``Net``): one column per task, each a copy of the network's
layers, every layer but the first also fed by the earlier columns' inputs to that layer.

Column ``t`` (from 0) at a convolution ``W`` (not the first) with input ``h_t`` computes

    ``W(h_t) + U(relu(V([α_1·h_1, ..., α_t·h_t])))``

(the earlier columns' inputs concatenated by channel): ``α`` one scalar per earlier column drawn from N(0, 1) (the
code's ``Embedding(1, t)``; the paper says "a random small value"), ``V`` a 1×1 convolution with a bias from
``t·c`` to ``c`` channels (``V2x1``), ``U`` a convolution like ``W`` (kernel, stride, padding, bias) from ``c``
channels (``U2``); the sum goes on through the layers after ``W`` (BatchNorm, ReLU, pooling, dropout). Its head adds
``U(V([α_1·m_1, ..., α_t·m_t]))`` to the head's logits, without a nonlinearity (the code's ``Ufl``/``Vfl``), from
the earlier columns' last feature maps ``m``: ``V`` a 1×1 convolution (``t·C → C`` channels), ``U`` a linear layer
from the flattened map to the task's classes. The code's ``V`` into a linear layer is a linear layer on the
flattened map; here the head reads a feature map, and a 1×1 convolution (the code's reduction for convolutional
inputs) keeps ``V`` at ``t·C²`` parameters instead of ``t·n_feat²`` (``t``·1.0 M on ``Net`` at 32×32, ``t``·268 M
at 84×84).
"""
import copy
from typing import List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.multihead import MultiHeadNet

HEAD_LATERAL_OUTPUT = "head_lateral.U.1.weight"
"""A column's key (within ``columns.<t>.``) of the head adapter's last weight, whose rows are the task's classes."""


def check_column_layers(layers: Sequence[nn.Module]) -> None:
    """A ``ValueError`` unless every layer is a dense convolution, a BatchNorm or free of parameters."""
    for layer in layers:
        if not isinstance(layer, (nn.Conv2d, nn.BatchNorm2d)) and next(layer.parameters(), None) is not None:
            raise ValueError(f"a progressive column is made of dense convolutions, BatchNorms and parameter-free "
                             f"layers, not {type(layer).__name__}")


def narrowed_layers(layers: Sequence[nn.Module], width: float) -> List[nn.Module]:
    """Fresh layers like ``layers`` (``check_column_layers``, in order), each convolution with
    ``max(1, round(width · out))`` output channels and its input the previous one's (the first keeps the image's
    channels), initialized as torch initializes new layers."""
    fresh, channels = [], None
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            inputs = layer.in_channels if channels is None else channels
            channels = max(1, round(width * layer.out_channels))
            fresh.append(nn.Conv2d(inputs, channels, layer.kernel_size, layer.stride, layer.padding,
                                   bias=layer.bias is not None))
        elif isinstance(layer, nn.BatchNorm2d):
            fresh.append(nn.BatchNorm2d(channels, layer.eps, layer.momentum))
        else:
            fresh.append(copy.deepcopy(layer))
    return fresh


def convolutions(layers: Sequence[nn.Module]) -> List[nn.Conv2d]:
    return [layer for layer in layers if isinstance(layer, nn.Conv2d)]


class Lateral(nn.Module):
    """``U(σ(V([α_1·h_1, ..., α_t·h_t])))`` from the ``earlier`` columns' inputs ``h`` of ``channels`` channels:
    ``σ`` the ReLU, or nothing (``nonlinear`` False: into a head)."""

    def __init__(self, earlier: int, channels: int, U: nn.Module, nonlinear: bool = True):
        super().__init__()
        self.alpha = nn.Parameter(torch.randn(earlier))
        self.V = nn.Conv2d(earlier * channels, channels, 1)
        self.U = U
        self.nonlinear = nonlinear

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        reduced = self.V(torch.cat([scale * h for scale, h in zip(self.alpha, inputs)], 1))
        return self.U(F.relu(reduced) if self.nonlinear else reduced)


class Column(nn.Module):
    """One task's column: its ``layers``; with ``earlier`` columns before it, a ``Lateral`` into every convolution
    but the first (``laterals``, by the convolution's position) and into its head (``head_lateral``: ``n_feat``
    flattened features to ``classes`` outputs); the first column has none."""

    def __init__(self, layers: Sequence[nn.Module], earlier: int = 0, n_feat: int = 0, classes: int = 0):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.laterals = nn.ModuleDict()
        self.head_lateral: Optional[Lateral] = None
        if earlier == 0:
            return
        first = convolutions(layers)[0]
        for position, layer in enumerate(layers):
            if isinstance(layer, nn.Conv2d) and layer is not first:
                U = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                              bias=layer.bias is not None)
                self.laterals[str(position)] = Lateral(earlier, layer.in_channels, U)
        maps = convolutions(layers)[-1].out_channels
        self.head_lateral = Lateral(earlier, maps, nn.Sequential(nn.Flatten(), nn.Linear(n_feat, classes)),
                                    nonlinear=False)

    def apply(self, position: int, h: torch.Tensor, earlier: Sequence[torch.Tensor]) -> torch.Tensor:
        """Layer ``position`` on this column's ``h``, plus its lateral from the ``earlier`` columns' inputs."""
        out = self.layers[position](h)
        if str(position) in self.laterals:
            out = out + self.laterals[str(position)](earlier)
        return out

    def parameters_per_layer(self) -> List[int]:
        """Parameters of each convolution (with the BatchNorm after it and the lateral into it), then of the head
        lateral (0 for the first column)."""
        counts: List[int] = []
        for position, layer in enumerate(self.layers):
            own = sum(p.numel() for p in layer.parameters())
            if str(position) in self.laterals:
                own += sum(p.numel() for p in self.laterals[str(position)].parameters())
            if isinstance(layer, nn.Conv2d):
                counts.append(own)
            elif counts:
                counts[-1] += own
        lateral = 0 if self.head_lateral is None else sum(p.numel() for p in self.head_lateral.parameters())
        return counts + [lateral]


def column_maps(columns: Sequence[Column], x: torch.Tensor) -> List[torch.Tensor]:
    """The last feature maps of ``columns`` (in order, each with its laterals from those before it) for input
    ``x``; gradients are recorded for the last column only (the earlier ones are constants to it)."""
    recording = torch.is_grad_enabled()
    inputs = [x] * len(columns)
    for position in range(len(columns[0].layers)):
        updated = []
        for index, column in enumerate(columns):
            with torch.set_grad_enabled(recording and index == len(columns) - 1):
                updated.append(column.apply(position, inputs[index], inputs[:index]))
        inputs = updated
    return inputs


def progressive_logits(columns: Sequence[Column], head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last column's task: its head on its flattened features, plus its head lateral from the earlier maps."""
    maps = column_maps(columns, x)
    logits = head(maps[-1].flatten(1))
    if columns[-1].head_lateral is not None:
        logits = logits + columns[-1].head_lateral(maps[:-1])
    return logits


class TaskNetwork(nn.Module):
    """One task's network: ``columns`` (its own last) and its ``head``."""

    def __init__(self, columns: Sequence[Column], head: nn.Module):
        super().__init__()
        self.columns = nn.ModuleList(columns)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return progressive_logits(list(self.columns), self.head, x)


class ProgressiveNet(MultiHeadNet):
    """The columns of a dense ``model``'s feature layers, at ``width`` times its channels, and its heads.

    The first column is ``model``'s own layers at width 1 (then its heads are ``model``'s), fresh narrowed ones
    otherwise (with fresh heads of ``model``'s design for the narrower features); ``add_column`` draws each later
    one. ``dense_feature_parameters`` keeps ``model``'s feature parameters (one dense model). In training mode
    every column but the newest keeps its BatchNorm layers in eval mode: their statistics are their tasks'.
    """

    def __init__(self, model: MultiHeadNet, width: float = 1.0):
        super().__init__()
        layers = model.feature_layers()
        check_column_layers(layers)
        first = layers if width == 1 else narrowed_layers(layers, width)
        self.dense_feature_parameters = sum(p.numel() for layer in layers for p in layer.parameters())
        positions = model.n_feat // convolutions(layers)[-1].out_channels
        self.n_feat = convolutions(first)[-1].out_channels * positions
        self.head_design = type(model).make_head
        self.columns = nn.ModuleList([Column(first)])
        if width == 1:
            self.last = model.last
        else:
            self.last = nn.ModuleDict({name: self.make_head(head_classes(head)) for name, head in model.last.items()})

    def make_head(self, n_classes: int) -> nn.Module:
        """A head of the dense model's design (its ``make_head``, which reads ``n_feat``) for the columns' features."""
        return self.head_design(self, n_classes)

    def add_column(self, classes: int) -> Column:
        """A new column, drawn afresh, for a task of ``classes`` outputs, with laterals from every earlier one."""
        column = Column(narrowed_layers(self.columns[0].layers, 1.0), len(self.columns), self.n_feat, classes)
        self.columns.append(column)
        return column

    def grow_like(self, state: Mapping[str, torch.Tensor]) -> None:
        """Add the columns a state dict of such a network holds beyond this one's (their tensors are not loaded)."""
        while any(key.startswith(f"columns.{len(self.columns)}.") for key in state):
            self.add_column(state[f"columns.{len(self.columns)}.{HEAD_LATERAL_OUTPUT}"].shape[0])

    def train(self, mode: bool = True) -> "ProgressiveNet":
        super().train(mode)
        for column in list(self.columns)[:-1]:
            for layer in column.layers:
                if isinstance(layer, nn.BatchNorm2d):
                    layer.eval()
        return self

    def features(self, x: torch.Tensor, ranks=None) -> torch.Tensor:
        """The newest column's flattened features (with its laterals): the input of its task's head."""
        return column_maps(list(self.columns), x)[-1].flatten(1)

    def forward(self, x: torch.Tensor, column: int, head: str) -> torch.Tensor:
        """The logits of the task of ``column`` (its index), through the head ``last[head]``."""
        return progressive_logits(list(self.columns)[:column + 1], self.last[head], x)


def head_classes(head: nn.Module) -> int:
    """Outputs of a head: those of its last linear layer."""
    return [layer for layer in head.modules() if isinstance(layer, nn.Linear)][-1].out_features
