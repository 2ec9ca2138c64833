"""Datasets in memory as uint8 tensors, task splits, batched on-device transforms and the task loader."""
from dataloaders.datasets import (CIFAR10, CIFAR100, DATASET_CLASSES, DATASET_INPUTS, DATASETS, MNIST, FashionMNIST,
                                  ImageSet, NetworkInput, load_dataset, miniImageNet, read_idx)
from dataloaders.inputs import MULTIDATASET, input_size, network_input
from dataloaders.loader import TaskLoader
from dataloaders.multidataset import SVHN, multidataset_tasks, notMNIST
from dataloaders.splits import PermutedGen, SplitGen, TaskData, first_samples, split_boundaries
from dataloaders.transforms import BatchTransform, crop_and_flip

__all__ = ["BatchTransform", "CIFAR10", "CIFAR100", "DATASETS", "DATASET_CLASSES", "DATASET_INPUTS", "FashionMNIST",
           "ImageSet", "MNIST", "MULTIDATASET", "NetworkInput", "PermutedGen", "SVHN", "SplitGen", "TaskData",
           "TaskLoader", "crop_and_flip", "first_samples", "input_size", "load_dataset", "miniImageNet",
           "multidataset_tasks", "network_input", "notMNIST", "read_idx", "split_boundaries"]
