"""Task sequences built from a dataset, with the semantics of the GT-RIPL Continual-Learning-Benchmark.

``SplitGen`` cuts the classes into consecutive groups (split CIFAR-100: 10 tasks of 10 classes); ``PermutedGen`` makes
every task see all classes under its own fixed pixel permutation. Both return
``(train_splits, test_splits, task_output_space)`` keyed by task names "1", "2", ….
"""
import dataclasses
import random
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch

from dataloaders.datasets import ImageSet
from dataloaders.transforms import BatchTransform
from utils.errors import UserError


@dataclass
class TaskData:
    """The samples of one task."""

    name: str
    """Task name, "1", "2", …"""
    images: torch.Tensor
    """uint8 (N, C, H, W)."""
    targets: torch.Tensor
    """int64 (N,), already remapped when the split asked for it."""
    transform: BatchTransform

    def __len__(self) -> int:
        return len(self.targets)


def first_samples(splits: Dict[str, TaskData], count: int) -> Dict[str, TaskData]:
    """Each task cut to its first ``count`` samples, in dataset order (``count`` = 0: every sample)."""
    if count == 0:
        return splits
    return {name: dataclasses.replace(task, images=task.images[:count], targets=task.targets[:count])
            for name, task in splits.items()}


def _num_classes(train_set: ImageSet, test_set: ImageSet) -> int:
    if train_set.num_classes != test_set.num_classes:
        raise UserError(f"the train set has {train_set.num_classes} classes but the test set {test_set.num_classes}: "
                        "the dataset files are incomplete, replace them by the official ones")
    return train_set.num_classes


def split_boundaries(num_classes: int, first_split_sz: int, other_split_sz: int) -> List[int]:
    """Class boundaries b = [0, first, first + other, first + 2·other, …] up to ``num_classes``.

    Task i (1-based) holds the classes [b(i−1), b(i)); the sizes must fill ``num_classes`` exactly.
    """
    if first_split_sz <= 0 or other_split_sz <= 0:
        raise UserError(f"--first_split_size {first_split_sz} --other_split_size {other_split_sz}: both must be "
                        "positive")
    boundaries = [0, first_split_sz]
    while boundaries[-1] < num_classes:
        boundaries.append(boundaries[-1] + other_split_sz)
    if boundaries[-1] != num_classes:
        raise UserError(f"--first_split_size {first_split_sz} --other_split_size {other_split_sz} do not divide the "
                        f"{num_classes} classes of the dataset into whole tasks: choose sizes with "
                        f"first + k·other = {num_classes}")
    return boundaries


def _subclass(image_set: ImageSet, name: str, class_list: List[int], remap_class: bool) -> TaskData:
    """The samples of ``image_set`` whose label is in ``class_list``, in dataset order.

    With ``remap_class`` a label becomes its position in ``class_list`` (0 … len − 1).
    """
    classes = torch.tensor(class_list, dtype=torch.int64)
    selected = torch.isin(image_set.labels, classes)
    labels = image_set.labels[selected]
    if remap_class:
        position_of_class = torch.full((image_set.num_classes,), -1, dtype=torch.int64)
        position_of_class[classes] = torch.arange(len(classes))
        labels = position_of_class[labels]
    return TaskData(name, image_set.images[selected], labels, image_set.transform)


def SplitGen(train_set: ImageSet, test_set: ImageSet, first_split_sz: int = 2, other_split_sz: int = 2,
             rand_split: bool = False,
             remap_class: bool = False) -> Tuple[Dict[str, TaskData], Dict[str, TaskData], Dict[str, int]]:
    """Class-incremental tasks: task "i" holds the classes [b(i−1), b(i)) of :func:`split_boundaries`.

    With ``rand_split`` those ranges index ``torch.randperm(num_classes)`` (global torch RNG) instead of the class ids
    themselves. ``task_output_space[name]`` is the number of classes of the task.
    """
    num_classes = _num_classes(train_set, test_set)
    boundaries = split_boundaries(num_classes, first_split_sz, other_split_sz)
    class_order = torch.randperm(num_classes) if rand_split else torch.arange(num_classes)
    train_splits, test_splits, task_output_space = {}, {}, {}
    for task in range(1, len(boundaries)):
        name = str(task)
        class_list = class_order[boundaries[task - 1]:boundaries[task]].tolist()
        train_splits[name] = _subclass(train_set, name, class_list, remap_class)
        test_splits[name] = _subclass(test_set, name, class_list, remap_class)
        task_output_space[name] = len(class_list)
    return train_splits, test_splits, task_output_space


def PermutedGen(train_set: ImageSet, test_set: ImageSet, n_permute: int,
                remap_class: bool = False) -> Tuple[Dict[str, TaskData], Dict[str, TaskData], Dict[str, int]]:
    """Domain-incremental tasks: all classes in every task, task "i" > 1 under its own fixed pixel permutation.

    As published: for every task i = 1 … n, ``random.shuffle`` (Python's generator) of ``list(range(C·H·W))``, C the
    channels the network sees; task 1 keeps its images as they are (its draw is discarded), task i > 1 permutes
    every input's C·H·W values, after normalisation, by its draw. With ``remap_class`` task i's labels are offset by
    (i − 1)·num_classes. ``task_output_space[name]`` is num_classes, as in GT-RIPL.
    """
    if n_permute <= 0:
        raise UserError(f"--n_permutation {n_permute}: the number of permuted tasks must be positive")
    num_classes = _num_classes(train_set, test_set)
    channels, height, width = train_set.images.shape[1:]
    values = (3 if train_set.transform.to_rgb else channels) * height * width
    train_splits, test_splits, task_output_space = {}, {}, {}
    for task in range(1, n_permute + 1):
        name = str(task)
        order = list(range(values))
        random.shuffle(order)
        permutation = torch.tensor(order) if task > 1 else None
        label_offset = (task - 1) * num_classes if remap_class else 0
        for image_set, splits in ((train_set, train_splits), (test_set, test_splits)):
            transform = dataclasses.replace(image_set.transform, permutation=permutation)
            splits[name] = TaskData(name, image_set.images, image_set.labels + label_offset, transform)
        task_output_space[name] = num_classes
    return train_splits, test_splits, task_output_space
