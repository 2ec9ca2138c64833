"""``FeatureExtraction``: the shared layers learn the first task, then only each new task's own head learns (the
freezing baseline of FACIL, ``src/approach/freezing.py``, flag ``--freeze-after``)."""
from dataclasses import dataclass
from typing import List

from torch import nn

from agents.default import LoopSettings, NormalNN
from utils.flags import at_least_zero, flag


@dataclass
class FeatureExtractionSettings(LoopSettings):
    """Feature extraction's own flag (FACIL's name and default)."""

    freeze_after: int = flag(0, "the index of the last task that trains the shared layers (0: the first)",
                             valid=at_least_zero, requirement="must be 0 or more")


class FeatureExtraction(NormalNN):
    """Tasks 0 to ``freeze_after`` (in training order) train every parameter; every later task trains only its
    own head, so the shared layers stay as they were and no earlier task's outputs change."""

    Settings = FeatureExtractionSettings

    def trainable_parameters(self, task: str) -> List[nn.Parameter]:
        if len(self.tasks_trained) <= self.settings.freeze_after:
            return super().trainable_parameters(task)
        return [p for head in self.training_heads for p in self.model.last[head].parameters()]
