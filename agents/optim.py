"""The optimizer a task trains with: ``--optimizer`` names one of ``torch.optim``'s, or ``amsgrad``."""
from typing import Iterable, List

import torch
from torch import nn

from utils.errors import UserError


def valid_optimizers() -> List[str]:
    """torch.optim's optimizers but LBFGS (its step needs a closure), and ``amsgrad``."""
    names = [name for name, obj in vars(torch.optim).items()
             if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
             and obj not in (torch.optim.Optimizer, torch.optim.LBFGS)]
    return sorted(names + ["amsgrad"])


MOMENTUM_OPTIMIZERS = ("SGD", "RMSprop")
"""The optimizers given ``--momentum``."""


def check_optimizer(name: str, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
    """A known ``--optimizer``; ``0 ≤ --momentum < 1`` where it is used; ``--weight_decay ≥ 0``."""
    if name not in valid_optimizers():
        raise UserError(f"unknown --optimizer {name!r}; valid: {', '.join(valid_optimizers())}")
    if name in MOMENTUM_OPTIMIZERS and not 0 <= momentum < 1:
        raise UserError(f"--momentum must lie in [0, 1) for --optimizer {name}, got {momentum}")
    if not weight_decay >= 0:
        raise UserError(f"--weight_decay must be 0 or more, got {weight_decay}")


def make_optimizer(params: Iterable[nn.Parameter], name: str, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """``torch.optim.<name>`` with lr and weight decay; momentum for SGD/RMSprop; ``amsgrad`` is Adam(amsgrad)."""
    check_optimizer(name, momentum, weight_decay)
    kwargs = {"lr": lr, "weight_decay": weight_decay}
    if name in MOMENTUM_OPTIMIZERS:
        kwargs["momentum"] = momentum
    elif name == "Rprop":
        del kwargs["weight_decay"]
    elif name == "amsgrad":
        kwargs["amsgrad"] = True
    try:
        return getattr(torch.optim, "Adam" if name == "amsgrad" else name)(params, **kwargs)
    except ValueError as error:  # torch validates lr, momentum and weight decay
        raise UserError(f"--optimizer {name}: {error}") from None
