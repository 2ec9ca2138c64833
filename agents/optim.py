"""The optimizer a task trains with: ``--optimizer`` names one of ``torch.optim``'s, or ``amsgrad``."""
import inspect
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


def optimizer_class(name: str) -> type:
    """The ``torch.optim`` class of a valid ``--optimizer`` (``amsgrad``: Adam)."""
    return getattr(torch.optim, "Adam" if name == "amsgrad" else name)


def has_capturable_form(name: str) -> bool:
    """Whether ``--optimizer name`` takes torch's ``capturable`` argument: its step then keeps its step counters on
    the device and computes from them there, so that it can be captured in a CUDA graph."""
    return "capturable" in inspect.signature(optimizer_class(name).__init__).parameters


CAPTURE_SAFE_AS_THEY_ARE = ("SGD",)
"""Optimizers whose step keeps no host-side state and reads no number that changes from step to step (SGD: the
momentum buffers on the device, the learning rate as the graph's constant): captured without a capturable form."""


def capture_safe_optimizer(name: str) -> bool:
    """Whether a step of ``--optimizer name`` can be captured in a CUDA graph: it has a capturable form, or needs
    none (``CAPTURE_SAFE_AS_THEY_ARE``)."""
    return name in CAPTURE_SAFE_AS_THEY_ARE or has_capturable_form(name)


def set_capturable(optimizer: torch.optim.Optimizer, capturable: bool) -> None:
    """A loaded optimizer in the form this run steps with: ``load_state_dict`` takes the saved groups' options, so
    a checkpoint of a captured run (``--cuda_graph`` on CUDA) makes it capturable and one of an eager run not. Each
    group's ``capturable`` set, and the step counters moved where that form keeps them (torch's own rule): on the
    parameter's device in float32 when capturable, else on the CPU."""
    for group in optimizer.param_groups:
        if "capturable" not in group:
            continue
        group["capturable"] = capturable
        for parameter in group["params"]:
            step = optimizer.state.get(parameter, {}).get("step")
            if torch.is_tensor(step):
                optimizer.state[parameter]["step"] = (step.to(parameter.device, torch.float32) if capturable
                                                      else step.cpu())


def make_optimizer(params: Iterable[nn.Parameter], name: str, lr: float, momentum: float, weight_decay: float,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.<name>`` with lr and weight decay; momentum for SGD/RMSprop; ``amsgrad`` is Adam(amsgrad); with
    ``capturable``, in its capturable form where it has one (``has_capturable_form``)."""
    check_optimizer(name, momentum, weight_decay)
    kwargs = {"lr": lr, "weight_decay": weight_decay}
    if capturable and has_capturable_form(name):
        kwargs["capturable"] = True
    if name in MOMENTUM_OPTIMIZERS:
        kwargs["momentum"] = momentum
    elif name == "Rprop":
        del kwargs["weight_decay"]
    elif name == "amsgrad":
        kwargs["amsgrad"] = True
    try:
        return optimizer_class(name)(params, **kwargs)
    except ValueError as error:  # torch validates lr, momentum and weight decay
        raise UserError(f"--optimizer {name}: {error}") from None
