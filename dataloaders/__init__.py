"""Datasets in memory as uint8 tensors, task splits, batched on-device transforms and the task loader."""
from dataloaders.datasets import (CIFAR10, CIFAR100, DATASET_CLASSES, DATASET_INPUTS, DATASETS, MNIST, FashionMNIST,
                                  ImageSet, NetworkInput, load_dataset, local_idx_folder, miniImageNet, read_idx)
from dataloaders.image_folder import IMAGE_FOLDER, load_image_folder, read_image_folder, scan_image_folder
from dataloaders.inputs import MULTIDATASET, input_size, network_input
from dataloaders.loader import TaskLoader
from dataloaders.multidataset import SVHN, notMNIST
from dataloaders.sequence import SEQUENCE, multidataset_tasks, read_sequence_spec, sequence_tasks
from dataloaders.splits import PermutedGen, SplitGen, TaskData, first_samples, split_boundaries
from dataloaders.transforms import BatchTransform, crop_and_flip

__all__ = ["BatchTransform", "CIFAR10", "CIFAR100", "DATASETS", "DATASET_CLASSES", "DATASET_INPUTS", "FashionMNIST",
           "IMAGE_FOLDER", "ImageSet", "MNIST", "MULTIDATASET", "NetworkInput", "PermutedGen", "SEQUENCE", "SVHN",
           "SplitGen", "TaskData", "TaskLoader", "crop_and_flip", "first_samples", "input_size", "load_image_folder",
           "load_dataset", "local_idx_folder", "miniImageNet", "multidataset_tasks", "network_input", "notMNIST", "read_idx",
           "read_image_folder", "read_sequence_spec", "scan_image_folder", "sequence_tasks", "split_boundaries"]
