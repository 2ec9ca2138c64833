"""Tasks, models and agents from a :class:`~experiment.config.Config`."""
import random
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

import torch

from agents import NormalNN
from dataloaders import IMAGE_FOLDER, MULTIDATASET, SEQUENCE, PermutedGen, SplitGen, first_samples, load_dataset
from dataloaders import multidataset_tasks, read_image_folder, read_sequence_spec, scan_image_folder, sequence_tasks
from dataloaders import split_boundaries
from experiment.config import Config, DataSpec, Experiment
from experiment.protocols import TaskStream
from models import build_model_for
from models.multihead import ALL_TASKS
from utils.files import read_state


FIXED_TASKS = (MULTIDATASET, SEQUENCE)
"""``--dataset`` names whose tasks are fixed (one dataset each), not split by the flags."""


def load_data(data: DataSpec):
    """The dataset's train and test sets, or the fixed tasks of a sequence (the 5-dataset one or a spec's); split
    sizes that do not fit the classes read are a one-line error, for an image folder before any image is
    decoded."""
    if data.dataset == MULTIDATASET:
        return multidataset_tasks(data.dataroot)
    if data.dataset == SEQUENCE:
        return sequence_tasks(read_sequence_spec(data.dataroot, data.image_size), data.image_size)
    if data.dataset == IMAGE_FOLDER:
        listing = scan_image_folder(data.dataroot)
        if data.n_permutation == 0:
            split_boundaries(len(listing.classes), data.first_split_size, data.other_split_size)
        return read_image_folder(listing, data.image_size, data.train_aug)
    loaded = load_dataset(data.dataset, data.dataroot, data.train_aug)
    if data.n_permutation == 0:
        split_boundaries(loaded[0].num_classes, data.first_split_size, data.other_split_size)
    return loaded


def task_splits(data: DataSpec, loaded):
    """Class splits, permutations, or a sequence's fixed tasks."""
    if data.dataset in FIXED_TASKS:
        return loaded
    train_set, test_set = loaded
    remap = not data.no_class_remap
    if data.n_permutation > 0:
        # every task has all classes: offsetting labels per task only makes sense for one shared head
        return PermutedGen(train_set, test_set, data.n_permutation, remap_class=remap and data.force_out_dim > 0)
    return SplitGen(train_set, test_set, first_split_sz=data.first_split_size,
                    other_split_sz=data.other_split_size, rand_split=data.rand_split, remap_class=remap)


@dataclass
class Tasks:
    """A run's tasks: in training order with their data (``stream``), the classes of each and the heads they need,
    and the side of their square images."""

    stream: TaskStream
    classes: Dict[str, int]
    out_dim: Dict[str, int]
    image_size: int


def make_tasks(config: Config, loaded, device: torch.device, order: Optional[List[str]] = None) -> Tasks:
    """The tasks of ``loaded`` data, split as the flags say, with at most ``--max_train_samples`` training samples
    a task (the first ones); in ``order`` when given, else sorted by number and, under ``--rand_split_order``,
    shuffled with Python's ``random`` (seeded by the caller). One head per task, or the one shared head of
    ``--force_out_dim``; ``--eval_on_train_set`` evaluates on the training data, ``--task_agnostic`` also without the
    task label."""
    data = config.data
    train_splits, test_splits, classes = task_splits(data, loaded)
    train_splits = first_samples(train_splits, data.max_train_samples)
    if order is None:
        order = sorted(train_splits, key=int)
        if data.rand_split_order:
            random.shuffle(order)
    evaluation = train_splits if config.protocol.eval_on_train_set else test_splits
    stream = TaskStream(list(order), train_splits, evaluation, config.protocol.batch_size, device,
                        config.protocol.task_agnostic)
    out_dim = {ALL_TASKS: data.force_out_dim} if data.force_out_dim > 0 else dict(classes)
    return Tasks(stream, dict(classes), out_dim, next(iter(train_splits.values())).images.shape[-1])


def make_agent(config: Config, experiment: Experiment, device: torch.device, image_size: int,
               out_dim: Mapping[str, int], state: Optional[dict] = None, source: str = "") -> NormalNN:
    """The method's agent in ``experiment``, its model with a head per entry of ``out_dim`` (made into the network
    the method trains, ``NormalNN.method_model``); the model starts from ``state`` (or ``--model_weights``) when
    given, built with the ranks that state's SVD layers have."""
    model_spec = config.model
    if state is None and model_spec.model_weights:
        state, source = read_state(model_spec.model_weights), model_spec.model_weights
    model = build_model_for(model_spec.model_type, model_spec.model_name, image_size, state, source)
    model.add_heads(out_dim)
    method, settings = config.method.cls, config.settings(experiment, device)
    model = method.method_model(model, settings, state)
    if state is not None:
        model.load_checked(state, source)
    return method(model, settings)
