"""Tasks, models and agents from the driver's flags."""
import random
from dataclasses import dataclass, fields
from typing import Dict, List, Mapping, Optional

import torch

from agents import NormalNN, agent_class
from dataloaders import MULTIDATASET, PermutedGen, SplitGen, first_samples, load_dataset, multidataset_tasks
from evaluation.results import SWEPT_FLAGS
from experiment.saved_model import load_state, read_state, svd_ranks
from models import build_model, svd_layers
from models.multihead import ALL_TASKS
from utils.errors import UserError


@dataclass(frozen=True)
class Setting:
    """One experiment of a sweep: its name (its folder under ``results/``, ``saves/`` and ``runs/``) and the agent
    settings it gives a value of its own."""

    name: str
    overrides: Mapping[str, float]


def swept_flag(args) -> str:
    """``sparse_wt`` for an agent that reads it (CACL; as published), ``reg_coef`` for the others (the baselines)."""
    settings = agent_class(args.agent_type, args.agent_name).Settings
    return "sparse_wt" if "sparse_wt" in {field.name for field in fields(settings)} else "reg_coef"


def sweep_settings(args) -> List[Setting]:
    """The experiments the flags ask for, in order: one per value of the ``swept_flag``, ``<exp_name>_<flag><value>``
    (``<exp_name>_sparse_wt<w>``, ``<exp_name>_reg_coef<c>``)."""
    flag = swept_flag(args)
    return [Setting(f"{args.exp_name}_{flag}{value}", {flag: value}) for value in getattr(args, flag)]


def load_data(args):
    """The dataset's train and test sets, or the five fixed tasks of the 5-dataset sequence."""
    if args.dataset == MULTIDATASET:
        return multidataset_tasks(args.dataroot)
    return load_dataset(args.dataset, args.dataroot, args.train_aug)


def build_tasks(args, data):
    """Train and test data per task, and each task's number of classes, with at most ``--max_train_samples``
    training samples a task (the first ones)."""
    train_splits, test_splits, task_output_space = task_splits(args, data)
    return first_samples(train_splits, args.max_train_samples), test_splits, task_output_space


def task_splits(args, data):
    """Class splits, permutations, or the 5-dataset sequence's fixed tasks."""
    if args.dataset == MULTIDATASET:
        return data
    train_set, test_set = data
    remap = not args.no_class_remap
    if args.n_permutation > 0:
        # every task has all classes: offsetting labels per task only makes sense for one shared head
        return PermutedGen(train_set, test_set, args.n_permutation, remap_class=remap and args.force_out_dim > 0)
    return SplitGen(train_set, test_set, first_split_sz=args.first_split_size, other_split_sz=args.other_split_size,
                    rand_split=args.rand_split, remap_class=remap)


def output_dims(args, task_output_space: Dict[str, int]) -> Dict[str, int]:
    """One head per task, or the one shared head of ``--force_out_dim``."""
    if args.force_out_dim > 0:
        return {ALL_TASKS: args.force_out_dim}
    if args.no_class_remap and args.n_permutation == 0:
        raise UserError("--no_class_remap keeps the dataset's labels: give --force_out_dim with the number of classes")
    return dict(task_output_space)


def image_size(splits) -> int:
    return next(iter(splits.values())).images.shape[-1]


def task_order(args, task_names: List[str]) -> List[str]:
    """Tasks sorted by number; shuffled with Python's ``random`` under ``--rand_split_order``."""
    names = sorted(task_names, key=int)
    if args.rand_split_order:
        random.shuffle(names)
    return names


def evaluation_splits(args, train_splits, test_splits):
    """``--eval_on_train_set`` evaluates on the training data."""
    return train_splits if args.eval_on_train_set else test_splits


def agent_settings(settings_class: type, args, device: torch.device, overrides: Mapping[str, float]):
    """The agent's own ``Settings``, each field from the flag of the same name (a swept flag's from ``overrides``,
    the experiment's own value, or the field's default); ``device`` and channels-last (on the CPU) from the device."""
    names = {field.name for field in fields(settings_class)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name) and name not in SWEPT_FLAGS}
    values.update(device=str(device), channels_last=device.type == "cpu")
    values.update({name: value for name, value in overrides.items() if name in names})
    return settings_class(**values)


def make_agent(args, device: torch.device, image_size: int, out_dim: Dict[str, int],
               overrides: Mapping[str, float], state: Optional[dict] = None, source: str = "") -> NormalNN:
    """Model and agent from the flags and an experiment's ``overrides`` (``Setting``); the model starts from
    ``state`` (or ``--model_weights``) when given, built with the ranks that state's SVD layers have."""
    if state is None and args.model_weights:
        state, source = read_state(args.model_weights), args.model_weights
    model = build_model(args.model_type, args.model_name, image_size=image_size)
    if state is not None:
        ranks, layers = svd_ranks(state), len(svd_layers(model))
        if len(ranks) != layers:
            raise UserError(f"{source} holds {len(ranks)} SVD layers, --model_type {args.model_type} --model_name "
                            f"{args.model_name} has {layers}: it is another architecture; give the flags it was "
                            f"trained with")
        if ranks:
            model = build_model(args.model_type, args.model_name, image_size=image_size, rank=ranks)
    model.add_heads(out_dim)
    if state is not None:
        load_state(model, state, source)
    cls = agent_class(args.agent_type, args.agent_name)
    return cls(model, agent_settings(cls.Settings, args, device, overrides))
