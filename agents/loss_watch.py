"""The training loop's watch for a NaN or infinite loss, kept on the loss's device so that a step never waits for the
GPU to say whether its loss was finite."""
import math
from typing import Dict, List, Optional

import torch

from utils.errors import UserError


class LossWatch:
    """The loss terms of one epoch's steps, watched without reading them.

    ``step(terms)`` stacks the step's terms (``loss`` among them) as ``v`` (float64, which holds every float32 and
    bfloat16 value exactly) and keeps, on their device, the first iteration ``i`` of the epoch whose loss is NaN or
    infinite and its ``v``: ``first = where(first < 0 ∧ ¬isfinite(v_loss), i, first)``, the kept ``v`` likewise, ``i``
    counted on the device too. It reads nothing, so it never makes the CPU wait for the GPU; and it writes its tensors
    in place, made at its first step, so that a captured training step (``agents.step``) that includes it updates
    them at every replay.

    ``begin_epoch()`` starts the count of an epoch. ``check(task, epoch)`` reads all that once (one host-device
    sync): it raises the one-line error naming the task, the epoch, the iteration and the non-finite terms of the
    first non-finite step, and otherwise returns the last step's terms as numbers (what the loop logs). The loop
    calls it every ``print_freq`` steps and at the end of each epoch, before the epoch is checkpointed, so training
    stops at most ``print_freq`` steps after the loss became non-finite, and no checkpoint holds the state it led to.
    """

    def __init__(self):
        self.names: List[str] = []
        self.first: Optional[torch.Tensor] = None
        """The epoch's first non-finite iteration so far (-1: none), a 0-dim int64 tensor on the terms' device."""
        self.first_values: Optional[torch.Tensor] = None
        self.latest: Optional[torch.Tensor] = None
        self.iteration: Optional[torch.Tensor] = None
        """The epoch's steps so far (the next step's iteration), a 0-dim int64 tensor on the terms' device."""

    def begin_epoch(self) -> None:
        """No step of the epoch seen yet (the tensors are reset in place)."""
        if self.first is not None:
            self.first.fill_(-1)
            self.first_values.zero_()
            self.iteration.zero_()

    def step(self, terms: Dict[str, torch.Tensor]) -> None:
        values = torch.stack([value.detach().to(torch.float64) for value in terms.values()])
        if self.first is None:
            self.names = list(terms)
            self.first = torch.full((), -1, dtype=torch.int64, device=values.device)
            self.first_values = torch.zeros_like(values)
            self.latest = torch.zeros_like(values)
            self.iteration = torch.zeros((), dtype=torch.int64, device=values.device)
        elif list(terms) != self.names:
            raise RuntimeError(f"the loss terms changed within a task: {self.names}, then {list(terms)}")
        newly = (self.first < 0) & ~torch.isfinite(values[self.names.index("loss")])
        self.first.copy_(torch.where(newly, self.iteration, self.first))
        self.first_values.copy_(torch.where(newly, values, self.first_values))
        self.latest.copy_(values)
        self.iteration.add_(1)

    def check(self, task: str, epoch: int) -> Dict[str, float]:
        """Raise ``UserError`` if a watched step's loss was NaN or infinite; else the last step's terms by name
        (empty before any step). ``epoch`` counts from 0."""
        if self.first is None:
            return {}
        record = torch.cat([self.first.view(1).to(torch.float64), self.latest, self.first_values]).tolist()
        first, latest, at_first = int(record[0]), record[1:1 + len(self.names)], record[1 + len(self.names):]
        if first >= 0:
            values = dict(zip(self.names, at_first))
            bad = [name for name, value in values.items() if name != "loss" and not math.isfinite(value)]
            raise UserError(f"the loss became {values['loss']} at task {task}, epoch {epoch + 1}, iteration "
                            f"{first + 1} (bad term: {', '.join(bad) or 'loss'}): lower --lr or the loss weights")
        return dict(zip(self.names, latest))
