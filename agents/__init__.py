"""Agent registry: ``--agent_type`` names a module of this package and ``--agent_name`` a class in it.

Each agent class declares its own ``Settings`` dataclass (the flags it reads, with the published defaults).
"""
import importlib

from agents.default import NormalNN, NormalNNSettings
from utils.errors import UserError

AGENT_TYPES = {
    "default": ("NormalNN",),
    "SVDNet": ("SVDNet",),
    "regularization": ("L2", "EWC", "EWC_online", "SI", "MAS"),
    "exp_replay": ("Naive_Rehearsal", "Naive_Rehearsal_SI", "Naive_Rehearsal_L2", "Naive_Rehearsal_EWC",
                   "Naive_Rehearsal_MAS", "GEM"),
}


def agent_class(agent_type: str, agent_name: str) -> type:
    """``agents.<agent_type>.<agent_name>``, with a one-line error for unknown names."""
    if agent_type not in AGENT_TYPES:
        raise UserError(f"unknown --agent_type {agent_type!r}; valid: {', '.join(AGENT_TYPES)}")
    if agent_name not in AGENT_TYPES[agent_type]:
        raise UserError(f"unknown --agent_name {agent_name!r} for --agent_type {agent_type}; "
                        f"valid: {', '.join(AGENT_TYPES[agent_type])}")
    return getattr(importlib.import_module(f"agents.{agent_type}"), agent_name)


def build_agent(agent_type: str, agent_name: str, model, settings: NormalNNSettings) -> NormalNN:
    """``agents.<agent_type>.<agent_name>(model, settings)``."""
    return agent_class(agent_type, agent_name)(model, settings)


__all__ = ["AGENT_TYPES", "NormalNN", "NormalNNSettings", "agent_class", "build_agent"]
