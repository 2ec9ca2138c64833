"""A two-convolution network on 3×6×6 images and its tasks, for the rules of the methods that act on convolutions
(HAT, GPM): small enough to write its forward pass by hand in a test, with a BatchNorm, without dropout; and tasks of
32×32 images for the project's networks."""
import torch
from torch import nn

from dataloaders import BatchTransform, TaskData, TaskLoader
from models.multihead import MultiHeadNet


class TinyConvNet(MultiHeadNet):
    """``conv1`` 3→8 (3×3, bias) → ReLU → ``conv2`` 8→6 (3×3, padding 1, no bias) → ``bn`` → ReLU → 2×2 average
    pool → flatten (24 features)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 8, 3), nn.ReLU()
        self.conv2, self.bn, self.relu2 = nn.Conv2d(8, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.n_feat = 24
        self.last = nn.ModuleDict()

    def feature_layers(self):
        return [self.conv1, self.relu1, self.conv2, self.bn, self.relu2, self.pool]

    def features(self, x, ranks=None):
        for layer in self.feature_layers():
            x = layer(x)
        return x.flatten(1)


def conv_task(name: str, n: int = 32, seed: int = 0, channel: int = 0, side: int = 6) -> TaskData:
    """``n`` random 3×side×side images of two classes, told apart by ``channel``: bright (128-255) for class 1, dark
    (0-127) for class 0; the other channels are noise (0-255)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    images[:, channel] = images[:, channel] // 2 + 128 * labels.view(-1, 1, 1).to(torch.uint8)
    return TaskData(name, images, labels, BatchTransform([0.5] * 3, [0.25] * 3))


def conv_loader(task: TaskData, batch_size: int = 8) -> TaskLoader:
    return TaskLoader(task, batch_size, shuffle=True)


def image_loader(task: str) -> TaskLoader:
    """A loader of 24 random 32×32 images of two classes (the project's networks' input), told apart by channel
    ``task mod 3``; its batches drawn afresh each epoch."""
    return conv_loader(conv_task(task, n=24, seed=int(task), channel=int(task) % 3, side=32))


def conv_agent(cls, tasks=("1", "2", "3"), **settings):
    """``cls`` on a ``TinyConvNet`` (seed 0) with a head of two classes per task; one epoch at lr 0.05 unless
    ``settings`` say."""
    torch.manual_seed(0)
    model = TinyConvNet()
    model.add_heads({task: 2 for task in tasks})
    return cls(model, cls.Settings(**{"schedule": [1], "print_freq": 1000, "lr": 0.05, **settings}))
