"""Command-line flags declared once, as fields of the dataclasses the flags become.

A field made with :func:`flag` carries its flag's name, help and value check; :func:`add_flags` adds a dataclass's
flags to an ``argparse`` group, :func:`check_flags` checks their parsed values and :func:`from_flags` builds the
dataclass from them. A field's default is the flag's default: it is written nowhere else.
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from utils.errors import UserError


@dataclass(frozen=True)
class Flag:
    """How a dataclass field reads from the command line.

    ``names``: the option strings (default ``--<field>``); ``sweep``: the flag takes one or more values, one
    experiment each (the field holds the experiment's own value); ``nargs``: ``"+"`` for a list-valued field;
    ``negative``: for a boolean field, the option that sets it False (``--no_train_aug``; ``--no_cuda_graph``, a
    switch-off that keeps its meaning when the default changes);
    ``valid`` / ``requirement``: a value ``v`` is accepted when ``valid(v)``, else the error is
    ``<option> <requirement>, got <values>``.
    """

    help: str
    names: Tuple[str, ...] = ()
    sweep: bool = False
    nargs: Optional[str] = None
    negative: Optional[str] = None
    valid: Optional[Callable[[Any], bool]] = None
    requirement: str = ""


def flag(default, help: str, *names: str, sweep: bool = False, nargs: Optional[str] = None,
         negative: Optional[str] = None, valid: Optional[Callable[[Any], bool]] = None,
         requirement: str = "") -> Any:
    """A dataclass field with its flag (:class:`Flag`); a list default is copied for each instance."""
    metadata = {"flag": Flag(help, tuple(names), sweep, nargs, negative, valid, requirement)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# --- value checks -------------------------------------------------------------------------------------------------
def positive(value) -> bool:
    return value > 0


def at_least_zero(value) -> bool:
    return value >= 0


def inside_zero_one(value) -> bool:
    """``0 < value < 1`` (NaN is outside)."""
    return 0 < value < 1


def above_zero_up_to_one(value) -> bool:
    """``0 < value ≤ 1`` (NaN is outside)."""
    return 0 < value <= 1


# --- fields and their flags ---------------------------------------------------------------------------------------
def flag_fields(cls: type, own: bool = False) -> List[dataclasses.Field]:
    """The fields of dataclass ``cls`` that are flags; with ``own``, only those ``cls`` itself declares (not those
    it inherits)."""
    declared = cls.__dict__.get("__annotations__", {}) if own else None
    return [field for field in dataclasses.fields(cls) if "flag" in field.metadata
            and (declared is None or field.name in declared)]


def option_names(field: dataclasses.Field) -> Tuple[str, ...]:
    return field.metadata["flag"].names or (f"--{field.name}",)


def option(field: dataclasses.Field) -> str:
    """The flag's long name, as messages give it."""
    return next(name for name in option_names(field) if name.startswith("--"))


def default_of(field: dataclasses.Field):
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def add_flags(group, cls: type, own: bool = False) -> None:
    """Add the flags of dataclass ``cls`` (with ``own``, only those it declares itself) to an ``argparse`` parser or
    group; each stores into the field's name."""
    for field in flag_fields(cls, own):
        spec: Flag = field.metadata["flag"]
        default = default_of(field)
        names = option_names(field)
        if field.type in (bool, "bool"):
            group.add_argument(*names, dest=field.name, action="store_true", default=default, help=spec.help)
            if spec.negative:
                group.add_argument(spec.negative, dest=field.name, action="store_false",
                                   help=f"the opposite of {option(field)}")
            continue
        value_type = type(default[0] if isinstance(default, list) else default)
        if default is None:
            value_type = str
        if spec.sweep:
            group.add_argument(*names, dest=field.name, type=value_type, nargs="+", default=[default],
                               help=f"{spec.help} (one experiment each)")
        else:
            group.add_argument(*names, dest=field.name, type=value_type, nargs=spec.nargs, default=default,
                               help=spec.help)


def format_values(value) -> str:
    """A flag's value as typed on the command line: list items separated by spaces."""
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def check_flags(cls: type, flags: Mapping[str, Any], own: bool = False) -> None:
    """Every value of each flag of ``cls`` (with ``own``: those it declares) passes its check, else a one-line
    ``UserError``: ``<option> <requirement>, got <values>``."""
    for field in flag_fields(cls, own):
        spec: Flag = field.metadata["flag"]
        if spec.valid is None:
            continue
        value = flags[field.name]
        values = value if spec.sweep or spec.nargs else [value]
        if not all(spec.valid(item) for item in values):
            raise UserError(f"{option(field)} {spec.requirement}, got {format_values(value)}")


def from_flags(cls: type, flags: Mapping[str, Any], swept: Optional[Mapping[str, Any]] = None, **others):
    """Dataclass ``cls`` with each flag field from ``flags`` (a swept field from ``swept``, the experiment's own
    value, else the first value given), and the other fields from ``others`` (their defaults where absent)."""
    swept = swept or {}
    values: Dict[str, Any] = {}
    for field in flag_fields(cls):
        value = flags[field.name]
        if field.metadata["flag"].sweep:
            value = swept.get(field.name, value[0])
        values[field.name] = value
    names = {field.name for field in dataclasses.fields(cls)}
    values.update({name: value for name, value in others.items() if name in names})
    return cls(**values)


def swept_flags(cls: type) -> List[str]:
    """The fields of ``cls`` whose flag makes one experiment per value."""
    return [field.name for field in flag_fields(cls) if field.metadata["flag"].sweep]
