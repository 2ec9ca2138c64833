"""Batched image transforms on uint8 tensors: augmentation, scaling, normalisation, pixel permutation.

The whole batch is transformed at once on whatever device holds it, so the data loader does no per-sample Python work;
what goes there from the CPU (the random draws, the normalisation) is copied without blocking, so a transform never
makes the CPU wait for the device. The augmentation reproduces torchvision's ``RandomCrop(H, padding=p)`` followed by
``RandomHorizontalFlip()`` and ``ToTensor()`` exactly, sample by sample; with p = 0 it is ``RandomHorizontalFlip()``
alone.
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F


def crop_and_flip(images: torch.Tensor, offsets_y: torch.Tensor, offsets_x: torch.Tensor, flips: torch.Tensor,
                  padding: int) -> torch.Tensor:
    """Zero-pad every image by ``padding``, crop it back to H×W at its own offset, and mirror it where asked.

    For sample b, output pixel (i, j) is ``padded[b, :, oy_b + i, c_b(j)]`` with ``c_b(j) = ox_b + (W − 1 − j)`` if
    ``flips[b]`` else ``ox_b + j``, where ``padded`` is the image with ``padding`` zero rows/columns on every side and
    offsets lie in ``[0, 2·padding]``.

    ``images``: (B, C, H, W) tensor of any dtype. ``offsets_y``, ``offsets_x``: (B,) integer offsets of the crop's
    top-left corner in the padded image. ``flips``: (B,) booleans, True to mirror the crop horizontally.
    ``padding``: number of zero pixels added on each side before cropping.
    """
    batch_size, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    device = images.device
    rows = offsets_y.to(device, non_blocking=True)[:, None] + torch.arange(height, device=device)
    columns = torch.arange(width, device=device).expand(batch_size, width)
    columns = torch.where(flips.to(device, non_blocking=True)[:, None], columns.flip(1), columns)
    columns = offsets_x.to(device, non_blocking=True)[:, None] + columns
    samples = torch.arange(batch_size, device=device)
    channel_indices = torch.arange(channels, device=device)
    return padded[samples[:, None, None, None], channel_indices[None, :, None, None], rows[:, None, :, None],
                  columns[:, None, None, :]]


@dataclass(eq=False)
class BatchTransform:
    """Turns a uint8 batch (B, C, H, W) into the normalised float32 network input (B, C', H, W).

    In order: optional random crop and flip (``augment``; with ``crop_padding = 0`` flip only, never a crop);
    ``x / 255``; optional grey → RGB (``to_rgb``, C' = 3); ``(x − mean[c]) / std[c]`` per channel (a single mean/std is
    broadcast over all channels); optional permutation of each input's values ``x.view(B, C'·H·W)[:, permutation]``.
    """

    mean: Union[Tuple[float, ...], List[float]]
    std: Union[Tuple[float, ...], List[float]]
    augment: bool = False
    crop_padding: int = 4
    to_rgb: bool = False
    permutation: Optional[torch.Tensor] = None

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Transform ``images`` on their own device; random draws come from ``generator`` (CPU) or the global RNG."""
        if self.augment:
            images = self.random_crop_and_flip(images, generator)
        inputs = images.float() / 255
        if self.to_rgb:
            inputs = inputs.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1).to(inputs.device, non_blocking=True)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1).to(inputs.device, non_blocking=True)
        inputs = (inputs - mean) / std
        if self.permutation is not None:
            values = inputs.reshape(inputs.shape[0], -1)[:, self.permutation.to(inputs.device, non_blocking=True)]
            inputs = values.view(inputs.shape)
        return inputs

    def random_crop_and_flip(self, images: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """Crop offsets uniform over the (2p+1)² positions and flips with probability 1/2, drawn per sample on CPU.

        With p = 0 the only position is the image itself: flips alone.
        """
        batch_size = images.shape[0]
        positions = 2 * self.crop_padding + 1
        offsets_y = torch.randint(positions, (batch_size,), generator=generator)
        offsets_x = torch.randint(positions, (batch_size,), generator=generator)
        flips = torch.rand(batch_size, generator=generator) < 0.5
        return crop_and_flip(images, offsets_y, offsets_x, flips, self.crop_padding)


def ready_inputs(inputs: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The transform of samples stored as network inputs already (a rehearsal memory): none."""
    return inputs
