"""Sequences of datasets, one task each with its own head: the 5-dataset sequence (``--dataset multidataset``) and
a researcher's own (``--dataset sequence --dataroot SPEC.json``).

A spec is a JSON list of entries ``{"dataset": NAME, "dataroot": PATH}``, one task each, in training order (tasks
"1", "2", ...). ``NAME`` is ``ImageFolder`` (``dataloaders.image_folder``) or a known dataset: a member of the
5-dataset sequence (:data:`~dataloaders.multidataset.MEMBERS`) or any of ``DATASETS``. A relative ``PATH`` is relative
to the spec's folder; without one, the entry reads the spec's folder. The 5-dataset sequence is the spec of its five
members in their order (:func:`multidataset_tasks`).

Each task holds its dataset's whole train and test sets with their own labels (a head of as many outputs as the
dataset has classes). A known dataset is normalised as in the 5-dataset sequence where it is one of its members
(:data:`~dataloaders.multidataset.NORMALISATION`), else as alone (``DATASET_INPUTS``); an image folder by its training
images' statistics. Nothing is augmented. Every task has the same image size: an image folder's is ``--image_size``.
"""
import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from dataloaders.datasets import DATASET_CLASSES, DATASET_INPUTS, DATASETS
from dataloaders.image_folder import IMAGE_FOLDER, read_image_folder, scan_image_folder
from dataloaders.multidataset import MEMBER_SIZE, MEMBERS, NORMALISATION, NUM_CLASSES
from dataloaders.splits import TaskData
from utils.errors import UserError

log = logging.getLogger(__name__)

SEQUENCE = "sequence"
"""``--dataset`` name of a sequence given by a spec file (``--dataroot SPEC.json``)."""

KNOWN_READERS = {**DATASETS, **MEMBERS}
"""The reader of each known dataset a spec may name: ``reader(dataroot)`` returns its (train, test) sets."""


@dataclass(frozen=True)
class SequenceEntry:
    """One task of a sequence: a dataset's name (``ImageFolder`` or one of :data:`KNOWN_READERS`) and its folder."""

    dataset: str
    dataroot: str

    def image_size(self, image_size: int) -> int:
        """The side of the task's images: ``image_size`` (``--image_size``) for an image folder."""
        if self.dataset == IMAGE_FOLDER:
            return image_size
        return DATASET_INPUTS[self.dataset].size if self.dataset in DATASET_INPUTS else MEMBER_SIZE


def entry_problem(entry: object) -> str:
    """What makes one item of a spec's list differ from ``{"dataset": NAME, "dataroot": PATH}``, or ""."""
    if not isinstance(entry, dict) or not isinstance(entry.get("dataset"), str):
        return 'is not {"dataset": NAME, "dataroot": PATH}'
    if entry["dataset"] not in (IMAGE_FOLDER, *KNOWN_READERS):
        return f"names the unknown dataset {entry['dataset']!r} (choose {', '.join((IMAGE_FOLDER, *KNOWN_READERS))})"
    if not isinstance(entry.get("dataroot", ""), str):
        return "has a dataroot that is not a path"
    others = sorted(set(entry) - {"dataset", "dataroot"})
    return f"has the unknown key {others[0]!r}" if others else ""


def read_sequence_spec(path: str, image_size: int) -> List[SequenceEntry]:
    """The entries of the spec file ``path``, checked (their folders are read later); ``image_size`` is
    ``--image_size``, which every task's images must have."""
    if not os.path.isfile(path):
        raise UserError(f"--dataset sequence reads a JSON list of {{\"dataset\": NAME, \"dataroot\": PATH}} from "
                        f"--dataroot: {path} is not a file")
    try:
        with open(path, encoding="utf-8") as stream:
            items = json.load(stream)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read the sequence {path}: {' '.join(str(error).split())}") from None
    if not isinstance(items, list) or not items:
        raise UserError(f"the sequence {path} is not a non-empty JSON list of {{\"dataset\": NAME, \"dataroot\": "
                        f"PATH}}")
    here = os.path.dirname(os.path.abspath(path))
    entries = []
    for number, item in enumerate(items, start=1):
        problem = entry_problem(item)
        if problem:
            raise UserError(f"the sequence {path}: entry {number} {problem}")
        entries.append(SequenceEntry(item["dataset"], os.path.join(here, item.get("dataroot", ""))))
    sizes = [entry.image_size(image_size) for entry in entries]
    if len(set(sizes)) > 1:
        other = next(number for number, size in enumerate(sizes, start=1) if size != sizes[0])
        raise UserError(f"the sequence {path} mixes image sizes: entry 1 ({entries[0].dataset}) is {sizes[0]}×"
                        f"{sizes[0]}, entry {other} ({entries[other - 1].dataset}) {sizes[other - 1]}×"
                        f"{sizes[other - 1]}; an image folder's size is --image_size")
    return entries


def sequence_tasks(entries: Sequence[SequenceEntry],
                   image_size: int) -> Tuple[Dict[str, TaskData], Dict[str, TaskData], Dict[str, int]]:
    """Task "i" is the whole i-th entry's dataset, labels as read, normalised as the module says, never augmented.

    Every image folder is listed and checked before any is decoded. Returns ``(train_splits, test_splits,
    task_output_space)``, the latter each dataset's number of classes.
    """
    listings = {index: scan_image_folder(entry.dataroot) for index, entry in enumerate(entries)
                if entry.dataset == IMAGE_FOLDER}
    train_splits, test_splits, task_output_space = {}, {}, {}
    for index, entry in enumerate(entries):
        name = str(index + 1)
        if index in listings:
            train_set, test_set = read_image_folder(listings[index], image_size, train_aug=False)
            transform = train_set.transform
            task_output_space[name] = len(listings[index].classes)
        else:
            train_set, test_set = KNOWN_READERS[entry.dataset](entry.dataroot)
            known = DATASET_INPUTS.get(entry.dataset)
            mean, std = NORMALISATION.get(entry.dataset) or (known.mean, known.std)
            transform = dataclasses.replace(train_set.transform, mean=mean, std=std, augment=False)
            task_output_space[name] = DATASET_CLASSES.get(entry.dataset, NUM_CLASSES)
        train_splits[name] = TaskData(name, train_set.images, train_set.labels, transform)
        test_splits[name] = TaskData(name, test_set.images, test_set.labels, transform)
        log.info("task %s: %s, %d train and %d test images", name, entry.dataset, len(train_set.labels),
                 len(test_set.labels))
    return train_splits, test_splits, task_output_space


def multidataset_tasks(dataroot: str) -> Tuple[Dict[str, TaskData], Dict[str, TaskData], Dict[str, int]]:
    """The 5-dataset sequence: tasks "1" … "5", the members of :data:`~dataloaders.multidataset.MEMBERS` in order,
    all read from ``dataroot`` (:func:`sequence_tasks` of that spec)."""
    return sequence_tasks([SequenceEntry(member, dataroot) for member in MEMBERS], MEMBER_SIZE)
