"""The project as a package: ``pyproject.toml`` and ``requirements.txt`` list the same dependencies, its console
commands are the four command lines, and each works from outside the repository."""
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO_ROOT

tomllib = pytest.importorskip("tomllib")
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
COMMANDS = {"cacl": "iBatchLearn", "cacl-sweep": "cluster.sweep", "cacl-export": "deployment.export",
            "cacl-report": "evaluation.report"}


def names(requirements):
    return {re.split(r"[<>=\[ ]", line.strip())[0].lower() for line in requirements
            if line.strip() and not line.strip().startswith("#")}


def test_requirements_txt_lists_the_dependencies_and_every_extra():
    extras = [requirement for name, group in PROJECT["optional-dependencies"].items() if name != "all"
              for requirement in group]
    declared = names(PROJECT["dependencies"]) | names(extras)
    assert names((REPO_ROOT / "requirements.txt").read_text().splitlines()) == declared


def test_the_packages_are_every_room():
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    rooms = {path.parent.name for path in REPO_ROOT.glob("*/__init__.py")} - {"tests"}
    assert set(setuptools["packages"]) == rooms and setuptools["py-modules"] == ["iBatchLearn"]


def test_the_console_commands_are_the_four_command_lines():
    scripts = PROJECT["scripts"]
    assert {command: target.split(":")[0] for command, target in scripts.items()} == COMMANDS
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))


def test_each_installed_command_answers_help_from_another_directory(tmp_path):
    installed = Path(sys.executable).parent
    if not (installed / "cacl").exists():
        pytest.skip("the project is not installed into this Python (./scripts/setup_env.sh installs it)")
    for command in COMMANDS:
        result = subprocess.run([str(installed / command), "--help"], cwd=tmp_path, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0 and "usage:" in result.stdout, result.stderr
