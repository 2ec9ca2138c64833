"""The published on-disk format of a trained CACL model: ``saves/<exp>/*.pth``, one file per piece of state."""
import os
from pathlib import Path
from typing import Dict, List, Mapping

import torch

from utils.errors import UserError
from utils.files import atomic_torch_save

MODEL_FILE = "final_model.pth"
STATE_FILES = ("rank.pth", "task_identifiers.pth", "task_name_count.pth", "chann_used.pth")
BATCHNORM_FILE = "batchnorm.pth"
"""Written with ``--save_running_stats`` (published): {task index: [[running_var, running_mean, num_batches_tracked]
for each BatchNorm layer in module order]}."""
BATCHNORM_BUFFERS = ("running_var", "running_mean", "num_batches_tracked")
SEARCH_DIRS = ("saves", "pretrained")


def save_checkpoint(directory: str, state_dict, rank, task_identifiers, task_name_count, chann_used,
                    running_stats=None) -> None:
    """Write the five files of the published format into ``directory`` (each written atomically), and
    ``batchnorm.pth`` when per-task BatchNorm statistics ({task name: [buffers of each layer]}) are given."""
    os.makedirs(directory, exist_ok=True)
    pieces = dict(zip((MODEL_FILE,) + STATE_FILES, (state_dict, rank, task_identifiers, task_name_count, chann_used)))
    if running_stats:
        pieces[BATCHNORM_FILE] = {task_name_count[task]: [[layer[name] for name in BATCHNORM_BUFFERS]
                                                          for layer in layers]
                                  for task, layers in running_stats.items()}
    for name, value in pieces.items():
        atomic_torch_save(value, os.path.join(directory, name))


def find_checkpoint(name: str, given_as: str = "--loadmodel") -> Path:
    """``name`` as a directory, else ``saves/<name>``, else ``pretrained/<name>``; ``given_as`` names it in errors."""
    for candidate in [Path(name)] + [Path(d) / name for d in SEARCH_DIRS]:
        if candidate.is_dir():
            return candidate
    raise UserError(f"{given_as} {name}: no such checkpoint directory (looked for {name}, saves/{name} and "
                    f"pretrained/{name})")


def read_state(path) -> object:
    """``torch.load`` of a file we did not write ourselves: a one-line error when it is missing or unreadable."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unreadable files
        raise UserError(f"cannot read {path}: {str(error).splitlines()[0]}") from None


def load_piece(directory: Path, name: str):
    if not (directory / name).is_file():
        raise UserError(f"checkpoint {directory} lacks {name} (a CACL checkpoint holds {MODEL_FILE} and "
                        f"{', '.join(STATE_FILES)})")
    return read_state(directory / name)


def svd_ranks(state: Mapping[str, torch.Tensor]) -> List[int]:
    """Rank of every SVD layer of a state dict (the length of each ``*.Sigma``), in order."""
    return [tensor.shape[0] for key, tensor in state.items() if key.endswith(".Sigma")]


def head_sizes(state: Mapping[str, torch.Tensor]) -> Dict[str, int]:
    """Outputs of every head of a state dict, ``{name: rows of the last weight of last.<name>}``."""
    sizes = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "last" and parts[-1] == "weight":
            sizes[parts[1]] = tensor.shape[0]
    return sizes


def load_state(model, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with a one-line error naming the first tensor that does not fit."""
    own = model.state_dict()
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if wrong:
        key = wrong[0]
        detail = f"tensor {key} has shape {tuple(state[key].shape)}, the model expects {tuple(own[key].shape)}"
    elif missing:
        detail = f"tensor {missing[0]} is missing"
    elif unexpected:
        detail = f"tensor {unexpected[0]} does not belong to the model"
    else:
        model.load_state_dict(state)
        return
    raise UserError(f"{source} does not fit this model and dataset: {detail}")


def load_checkpoint(directory: Path) -> Dict[str, object]:
    """All five pieces: ``state_dict``, ``rank``, ``task_identifiers``, ``task_name_count``, ``chann_used``; and
    ``running_stats`` from ``batchnorm.pth``, by task name ({} when the checkpoint has none)."""
    pieces = {name[:-4]: load_piece(directory, name) for name in STATE_FILES}
    pieces["state_dict"] = load_piece(directory, MODEL_FILE)
    pieces["running_stats"] = {}
    if (directory / BATCHNORM_FILE).is_file():
        pieces["running_stats"] = named_statistics(load_piece(directory, BATCHNORM_FILE),
                                                   pieces["task_name_count"], directory / BATCHNORM_FILE)
    return pieces


def named_statistics(by_index, task_name_count: Mapping[str, int],
                     source) -> Dict[str, List[Dict[str, torch.Tensor]]]:
    """``batchnorm.pth``'s {task index: [[running_var, running_mean, num_batches_tracked], ...]} as {task name:
    [{buffer name: tensor}, ...]}; a one-line error when it is not of that shape."""
    names = {index: task for task, index in task_name_count.items()}
    try:
        return {names[int(index)]: [dict(zip(BATCHNORM_BUFFERS, buffers, strict=True)) for buffers in layers]
                for index, layers in by_index.items()}
    except (AttributeError, KeyError, TypeError, ValueError):
        raise UserError(f"{source} is not a BatchNorm statistics file of this checkpoint's tasks ({{task index: "
                        f"[[running_var, running_mean, num_batches_tracked] per BatchNorm layer]}})") from None
