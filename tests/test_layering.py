"""The project's rooms import only downwards: benchmarks → driver → experiment → agents, dataloaders → evaluation →
models → utils.

Every import statement of every module (inside functions too) is read with ``ast``."""
import ast
from typing import Dict, List, Set

import pytest

from conftest import REPO_ROOT

MAY_IMPORT: Dict[str, Set[str]] = {
    "iBatchLearn": {"experiment", "agents", "dataloaders", "evaluation", "models", "utils"},
    "benchmarks": {"iBatchLearn", "experiment", "agents", "dataloaders", "evaluation", "models", "utils"},
    "experiment": {"agents", "dataloaders", "evaluation", "models", "utils"},
    "agents": {"evaluation", "models", "utils"},
    "dataloaders": {"evaluation", "utils"},
    "evaluation": {"models", "utils"},
    "models": {"utils"},
    "utils": set(),
}
"""The project's packages each room may import besides its own (the driver is the module ``iBatchLearn``)."""


def imported_packages(source: str) -> Set[str]:
    """The top-level names of everything ``source`` imports (absolute imports; relative ones stay in the room)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def arrows_against_the_order(room: str, source: str) -> List[str]:
    """The project packages ``source``, a module of ``room``, imports but may not."""
    project = set(MAY_IMPORT)
    return sorted(name for name in imported_packages(source) & project
                  if name != room and name not in MAY_IMPORT[room])


COMMAND_LINES = (REPO_ROOT / "iBatchLearn.py", REPO_ROOT / "experiment" / "sweep.py")
"""The driver and the sweep command (``python -m experiment.sweep`` takes the driver's flags): the top room."""


def modules():
    for path in COMMAND_LINES:
        yield "iBatchLearn", path
    for room in MAY_IMPORT:
        if room != "iBatchLearn":
            for path in sorted((REPO_ROOT / room).glob("*.py")):
                if path not in COMMAND_LINES:
                    yield room, path


@pytest.mark.parametrize("room, path", list(modules()), ids=lambda value: getattr(value, "name", value))
def test_module_imports_only_rooms_below_its_own(room, path):
    assert arrows_against_the_order(room, path.read_text()) == []


def test_every_room_is_checked():
    rooms = {room for room, _ in modules()}
    assert rooms == set(MAY_IMPORT)
    packages = {path.parent.name for path in REPO_ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(MAY_IMPORT), f"a package outside the layering: {packages - set(MAY_IMPORT)}"


@pytest.mark.parametrize("room, source, wrong", [
    ("models", "from experiment.run import Run", ["experiment"]),
    ("utils", "def f():\n    import agents.SVDNet\n", ["agents"]),
    ("dataloaders", "import models\nfrom utils.errors import UserError", ["models"]),
    ("evaluation", "from agents import NormalNN\nfrom dataloaders import TaskLoader", ["agents", "dataloaders"]),
    ("agents", "import iBatchLearn", ["iBatchLearn"]),
    ("experiment", "from agents import NormalNN\nimport torch\nfrom . import run", []),
])
def test_the_check_finds_an_arrow_against_the_order(room, source, wrong):
    assert arrows_against_the_order(room, source) == wrong
