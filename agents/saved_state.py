"""Saved models of the methods whose evaluation needs more than the model's tensors: ``final_model.pth`` and one
file of the method's own beside it, which ``--loadmodel`` reads back."""
import os
from typing import Mapping

from agents.default import MODEL_FILE, NormalNN
from utils.errors import UserError
from utils.files import atomic_torch_save, read_state


class SavedContinualState(NormalNN):
    """Saves, beside ``final_model.pth``, ``STATE_FILE``: ``{"tasks_trained": [names in training order],
    "running_stats": {task: BatchNorm statistics} (``--save_running_stats``), **continual_state()}``, and reads it
    back in ``load_saved``."""

    abstract = True
    STATE_FILE = ""
    """The file's name in ``saves/<exp>/``: each method names its own."""

    def save(self, directory: str) -> None:
        super().save(directory)
        state = {"tasks_trained": list(self.tasks_trained), "running_stats": self.running_stats,
                 **self.continual_state()}
        atomic_torch_save(state, os.path.join(directory, self.STATE_FILE))

    def load_saved(self, directory: str) -> None:
        """The tasks in training order, their BatchNorm statistics and the method's state, from ``STATE_FILE``; a
        one-line error when the file is missing or not of this method."""
        path = os.path.join(directory, self.STATE_FILE)
        if not os.path.isfile(path):
            raise UserError(f"checkpoint {directory} lacks {self.STATE_FILE} (a {type(self).__name__} model holds "
                            f"{MODEL_FILE} and {self.STATE_FILE}): was it saved by another method?")
        state = read_state(path)
        if not isinstance(state, Mapping) or not {"tasks_trained", "running_stats"} <= set(state):
            raise UserError(f"{path} is not a {type(self).__name__} state file (it lacks the tasks trained)")
        self.tasks_trained = [str(task) for task in state["tasks_trained"]]
        self.load_running_stats(state["running_stats"], path)
        try:
            self.load_continual_state(state)
        except (AttributeError, KeyError, TypeError):
            raise UserError(f"{path} is not a {type(self).__name__} state file (its method state is missing or of "
                            f"another shape)") from None
