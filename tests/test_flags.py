"""``utils.flags``: a flag declared once, as a field of the dataclass it becomes."""
from dataclasses import dataclass
from typing import List

import pytest

from experiment.config import MethodChoice
from utils.errors import ArgumentParser, UserError
from utils.flags import add_flags, at_least_zero, check_flags, flag, flag_fields, from_flags, swept_flags


@dataclass
class Base:
    lr: float = flag(0.001, "learning rate", valid=lambda value: value > 0, requirement="must be positive")
    schedule: List[int] = flag([2], "epochs", nargs="+")
    device: str = "cpu"


@dataclass
class Method(Base):
    weight: float = flag(0.01, "a weight", "-w", "--weight", sweep=True, valid=at_least_zero,
                         requirement="must be 0 or more")
    shuffle: bool = flag(True, "shuffle", negative="--no_shuffle")
    fast: bool = flag(False, "go fast")


def parse(*argv):
    parser = ArgumentParser()
    add_flags(parser, Method)
    return vars(parser.parse_args(list(argv)))


def test_a_field_is_its_flag_with_its_default_written_once():
    assert parse() == {"lr": 0.001, "schedule": [2], "weight": [0.01], "shuffle": True, "fast": False}
    assert parse("-w", "0.1", "0.4", "--no_shuffle", "--fast", "--schedule", "3", "5") == {
        "lr": 0.001, "schedule": [3, 5], "weight": [0.1, 0.4], "shuffle": False, "fast": True}
    assert Method().schedule == [2] and Method().schedule is not Method().schedule


def test_own_fields_are_those_the_class_declares():
    assert [field.name for field in flag_fields(Method, own=True)] == ["weight", "shuffle", "fast"]
    assert [field.name for field in flag_fields(Method)] == ["lr", "schedule", "weight", "shuffle", "fast"]
    assert swept_flags(Method) == ["weight"] and swept_flags(Base) == []


def test_every_value_is_checked_and_the_error_quotes_them():
    check_flags(Method, parse("-w", "0", "2"))
    with pytest.raises(UserError, match=r"^--weight must be 0 or more, got 0.1 -1.0$"):
        check_flags(Method, parse("-w", "0.1", "-1"))
    with pytest.raises(UserError, match=r"^--lr must be positive, got 0.0$"):
        check_flags(Method, parse("--lr", "0"))
    check_flags(Method, parse("--lr", "0"), own=True)  # --lr is Base's: not checked as Method's own


def test_the_dataclass_takes_a_swept_flags_value_of_the_experiment():
    flags = parse("-w", "0.1", "0.4")
    assert from_flags(Method, flags, {"weight": 0.4}, device="cuda:0", unknown=1) == Method(
        lr=0.001, schedule=[2], device="cuda:0", weight=0.4, shuffle=True, fast=False)
    assert from_flags(Method, flags).weight == 0.1


@pytest.mark.parametrize("agent_type, agent_name, expected", [
    ("exp_replay", "GEM", ["memory_size", "reg_coef"]),
    ("packnet", "PackNet", ["post_prune_epochs", "prune_perc_per_layer"]),
    ("SVDNet", "SVDNet", ["energy_sv", "grow_network", "perp_wt", "prev_sing", "reg_type_svd", "sparse_wt"]),
])
def test_a_methods_own_flags_are_those_its_settings_add_to_every_methods(agent_type, agent_name, expected):
    assert MethodChoice(agent_type, agent_name).own_flags == expected
