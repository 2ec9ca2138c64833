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


def check_optimizer(name: str) -> None:
    if name not in valid_optimizers():
        raise UserError(f"unknown --optimizer {name!r}; valid: {', '.join(valid_optimizers())}")


def make_optimizer(params: Iterable[nn.Parameter], name: str, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """``torch.optim.<name>`` with lr and weight decay; momentum for SGD/RMSprop; ``amsgrad`` is Adam(amsgrad)."""
    check_optimizer(name)
    kwargs = {"lr": lr, "weight_decay": weight_decay}
    if name in ("SGD", "RMSprop"):
        kwargs["momentum"] = momentum
    elif name == "Rprop":
        del kwargs["weight_decay"]
    elif name == "amsgrad":
        kwargs["amsgrad"] = True
    try:
        return getattr(torch.optim, "Adam" if name == "amsgrad" else name)(params, **kwargs)
    except ValueError as error:  # torch validates lr, momentum and weight decay
        raise UserError(f"--optimizer {name}: {error}") from None
