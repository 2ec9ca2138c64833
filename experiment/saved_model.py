"""Saved models: where ``--loadmodel`` finds one, how a run saves its agents into ``saves/<exp>/`` and how a saved
folder becomes an agent again. What a folder holds besides ``final_model.pth`` is the method's (``save``,
``load_saved``)."""
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch

from agents import NormalNN
from agents.default import MODEL_FILE
from experiment.builders import make_agent
from experiment.config import Config, Experiment
from models.multihead import head_sizes
from utils.errors import UserError
from utils.files import read_state

SEARCH_DIRS = ("saves", "pretrained")


def find_checkpoint(name: str, given_as: str = "--loadmodel") -> Path:
    """``name`` as a directory, else ``saves/<name>``, else ``pretrained/<name>``; ``given_as`` names it in errors."""
    for candidate in [Path(name)] + [Path(d) / name for d in SEARCH_DIRS]:
        if candidate.is_dir():
            return candidate
    raise UserError(f"{given_as} {name}: no such checkpoint directory (looked for {name}, saves/{name} and "
                    f"pretrained/{name})")


def read_model_state(directory: Path) -> Mapping[str, torch.Tensor]:
    """The model's state dict of a saved folder."""
    if not (directory / MODEL_FILE).is_file():
        raise UserError(f"checkpoint {directory} lacks {MODEL_FILE}")
    return read_state(directory / MODEL_FILE)


def saved_agent(config: Config, device: torch.device, directory: Path, image_size: int,
                out_dim: Optional[Mapping[str, int]] = None) -> NormalNN:
    """The method's agent of a saved folder for images of ``image_size`` pixels: its model (of the folder's ranks)
    with a head per entry of ``out_dim`` (None: the saved heads), and what the method saved beside them
    (``load_saved``)."""
    state = read_model_state(directory)
    agent = make_agent(config, Experiment(""), device, image_size, head_sizes(state) if out_dim is None else out_dim,
                       state=state, source=f"{directory}/{MODEL_FILE}")
    agent.load_saved(str(directory))
    return agent


def save_agents(agents: Sequence[NormalNN], directory: str) -> None:
    """Each agent's ``save`` into ``directory``; with one model per task (``--ind_models``) one folder
    ``task<name>/`` each."""
    if len(agents) > 1:
        for agent in agents:
            agent.save(os.path.join(directory, f"task{agent.tasks_trained[0]}"))
    else:
        agents[0].save(directory)
