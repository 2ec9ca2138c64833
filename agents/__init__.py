"""Method registry: ``--agent_type`` names a module of this package and ``--agent_name`` a method in it.

A method is a subclass of :class:`NormalNN` defined in a module of this package (not marked ``abstract``); the
modules are found by listing the package, so adding a method is adding its module. Each method's ``Settings``
declares its flags (``utils.flags.flag``); :func:`flag_groups` gives them by module, for the command line.
"""
import functools
import importlib
import pkgutil
from typing import Dict, List, Tuple

from agents.default import LoopSettings, NormalNN, NormalNNSettings
from utils.errors import UserError
from utils.flags import flag_fields


@functools.lru_cache(maxsize=None)
def agent_types() -> Dict[str, Dict[str, type]]:
    """``{module name: {class name: method class}}`` over the modules of this package that define methods, in
    the order of their names; each module's methods in the order it defines them."""
    found: Dict[str, Dict[str, type]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        methods = {name: obj for name, obj in vars(module).items()
                   if isinstance(obj, type) and issubclass(obj, NormalNN) and obj.__module__ == module.__name__
                   and not vars(obj).get("abstract", False)}
        if methods:
            found[module_info.name] = methods
    return found


def agent_class(agent_type: str, agent_name: str) -> type:
    """``agents.<agent_type>.<agent_name>``, with a one-line error for unknown names."""
    types = agent_types()
    if agent_type not in types:
        raise UserError(f"unknown --agent_type {agent_type!r}; valid: {', '.join(types)}")
    if agent_name not in types[agent_type]:
        raise UserError(f"unknown --agent_name {agent_name!r} for --agent_type {agent_type}; "
                        f"valid: {', '.join(types[agent_type])}")
    return types[agent_type][agent_name]


def flag_groups() -> List[Tuple[str, str, type]]:
    """``(title, description, settings class)`` for each settings class that declares flags of its own: first
    :class:`LoopSettings` (every method's), then those of each method module, each declared once."""
    groups = [("training (every method)", LoopSettings.__doc__, LoopSettings)]
    seen = {LoopSettings}
    for agent_type, methods in agent_types().items():
        for method in methods.values():
            for settings in method.Settings.__mro__:
                if settings in seen or not issubclass(settings, LoopSettings) or not flag_fields(settings, own=True):
                    continue
                seen.add(settings)
                groups.append((f"--agent_type {settings.__module__.split('.')[-1]}", settings.__doc__, settings))
    return groups


__all__ = ["LoopSettings", "NormalNN", "NormalNNSettings", "agent_class", "agent_types", "flag_groups"]
