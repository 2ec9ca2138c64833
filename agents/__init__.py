"""Agent registry: ``--agent_type`` names a module of this package and ``--agent_name`` a class in it."""
import importlib

from agents.default import AgentConfig, NormalNN
from utils.errors import UserError

AGENT_TYPES = {"default": ("NormalNN",), "SVDNet": ("SVDNet",)}


def build_agent(agent_type: str, agent_name: str, model, config: AgentConfig, writer=None) -> NormalNN:
    """``agents.<agent_type>.<agent_name>(model, config, writer)`` with a one-line error for unknown names."""
    if agent_type not in AGENT_TYPES:
        raise UserError(f"unknown --agent_type {agent_type!r}; valid: {', '.join(AGENT_TYPES)}")
    if agent_name not in AGENT_TYPES[agent_type]:
        raise UserError(f"unknown --agent_name {agent_name!r} for --agent_type {agent_type}; "
                        f"valid: {', '.join(AGENT_TYPES[agent_type])}")
    module = importlib.import_module(f"agents.{agent_type}")
    return getattr(module, agent_name)(model, config, writer)


__all__ = ["AGENT_TYPES", "AgentConfig", "NormalNN", "build_agent"]
