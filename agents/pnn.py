"""``PNN``: progressive networks (Rusu et al. 2016), as ``joansj/hat``'s ``progressive`` approach builds and trains
them (``src/approaches/progressive.py``, ``src/networks/alexnet_progressive.py``; Avalanche's
``avalanche/models/pnn.py``, the second reference, has the same adapter, ``MLPAdapter``: ``U(relu(V([α_i x_i])))``
with ``α`` drawn from N(0, 1); it also adapts the first layer, whose earlier columns' input is the image itself, which
the first code does not): one column per task, with lateral adapters from the earlier columns, which stay frozen.

``--agent_type pnn --agent_name PNN`` on the dense ``Net`` or VGG16-BN. The rules, from the code:

- **Columns** (``Net.__init__``, ``alexnet_progressive.py``): each task gets a new column, a copy of the model's
  layers drawn afresh (the first task the model's own layers), of the model's full width by default;
  ``--column_width`` narrows every column's channels (the code narrows them to ``1.117 / tasks`` of its AlexNet's
  so that all columns hold about one network's parameters). The adapters are ``models.progressive``'s.
- **Forward** (``Net.forward``): task ``t`` runs columns 0..t, each with its laterals from those before it; its
  logits are its own head on column ``t``'s features plus its head adapter. Dropout in the earlier columns follows
  the training mode, as in the code; their BatchNorm layers (the code's AlexNet has none) stay in eval mode.
- **Training** (``Appr.train``, ``Net.unfreeze_column``): only column ``t`` (its layers and adapters) and task
  ``t``'s head are given to the optimizer; every earlier column and head is left out of it, so no step of any
  optimizer (momentum, weight decay, Adam) changes them, and under plain SGD the step is the code's
  (``requires_grad`` off for the other columns, its optimizer over the rest).
- **Evaluation**: task ``t`` through columns 0..t and its head (``TaskNetwork``); a task never trained on its own
  (``--offline_training``) through the first column.

The model size counts every column, adapter and head (float32, CACL's convention); ``units_added`` gives each
column's parameters per convolution (with its BatchNorm and lateral) and of its head adapter. Its saved model is
``final_model.pth`` (the columns, their adapters and the heads) and ``pnn_columns.pth`` (``PNN.STATE_FILE``).
"""
import copy
from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from agents.default import LoopSettings, task_groups, to_device
from agents.saved_state import SavedContinualState
from models import check_dense_model
from models.multihead import MultiHeadNet
from models.progressive import ProgressiveNet, TaskNetwork, head_classes
from utils.errors import UserError
from utils.flags import above_zero_up_to_one, flag


@dataclass
class PNNSettings(LoopSettings):
    """Progressive networks' own flag."""

    column_width: float = flag(1.0, "channels of each column, as a fraction of the model's (rounded, at least 1)",
                               valid=above_zero_up_to_one, requirement="must lie in (0, 1]")

    def __post_init__(self):
        super().__post_init__()
        if self.save_running_stats:
            raise UserError("--save_running_stats: PNN keeps each column's BatchNorm statistics with it already")
        if self.compile:
            raise UserError("--compile is not available for PNN (each task's forward pass runs its own columns)")


class PNN(SavedContinualState):
    """Progressive networks (see the module docstring). Continual-learning state: ``columns`` {task: its column}."""

    Settings = PNNSettings
    STATE_FILE = "pnn_columns.pth"
    model: ProgressiveNet

    def __init__(self, model: MultiHeadNet, settings: PNNSettings):
        super().__init__(self.method_model(model, settings), settings)
        self.columns: Dict[str, int] = {}

    @classmethod
    def check_model(cls, model_type: str, model_name: str) -> None:
        check_dense_model(model_type, model_name, "PNN")

    @classmethod
    def method_model(cls, model: MultiHeadNet, settings: PNNSettings,
                     state: Optional[Mapping[str, torch.Tensor]] = None) -> ProgressiveNet:
        """The columns of ``model`` (``ProgressiveNet``), as many as ``state`` holds when given."""
        network = model if isinstance(model, ProgressiveNet) else ProgressiveNet(model, settings.column_width)
        if state is not None:
            network.grow_like(state)
        return network

    def column_of(self, task: str) -> int:
        return self.columns.get(task, 0)

    # --- training -------------------------------------------------------------------------------------------
    def freeze(self, task: str) -> None:
        """A new task's column: the first one, or a new one (on the model's device) after it is taken."""
        if task in self.columns:
            return
        if self.columns:
            column = self.model.add_column(head_classes(self.model.last[self.head_of(task)]))
            column.to(self.device, memory_format=self.memory_format)
        self.columns[task] = len(self.model.columns) - 1

    def trainable_parameters(self, task: str) -> List[nn.Parameter]:
        """The task's column (layers and adapters) and the heads being trained."""
        column = self.model.columns[self.columns[task]]
        return [*column.parameters(), *(p for head in self.training_heads for p in self.model.last[head].parameters())]

    def classification_loss(self, inputs: torch.Tensor, targets: torch.Tensor, tasks: Sequence[str]) -> torch.Tensor:
        """``NormalNN``'s multi-head cross-entropy, each task's samples through its own columns and head."""
        inputs = inputs.contiguous(memory_format=self.memory_format)
        total = 0
        for task, indices in task_groups(tasks):
            chosen = (inputs, targets) if indices is None else (inputs[to_device(indices, inputs)],
                                                                 targets[to_device(indices, targets)])
            logits = self.model(chosen[0], self.column_of(task), self.head_of(task))
            total = total + F.cross_entropy(self.valid_logits(logits, task), chosen[1], reduction="sum")
        return total / len(targets)

    # --- evaluation -----------------------------------------------------------------------------------------
    def trunk_key(self, task: str) -> Hashable:
        """Each task's own: its network runs its own columns (``task_network``)."""
        return task

    @torch.no_grad()
    def task_network(self, task: str) -> nn.Module:
        """A copy of the task's columns (0..its own) and head, in eval mode, without gradients."""
        columns = list(self.model.columns)[:self.column_of(task) + 1]
        network = copy.deepcopy(TaskNetwork(columns, self.model.last[self.head_of(task)])).eval()
        return network.requires_grad_(False).to(memory_format=self.memory_format)

    # --- state ----------------------------------------------------------------------------------------------
    def continual_state(self) -> Dict[str, Any]:
        return {"pnn_columns": self.columns}

    def load_continual_state(self, state: Mapping[str, Any]) -> None:
        columns = {str(task): int(index) for task, index in state["pnn_columns"].items()}
        if columns and max(columns.values()) >= len(self.model.columns):
            raise UserError(f"the saved PNN tasks use {max(columns.values()) + 1} columns, the model holds "
                            f"{len(self.model.columns)}")
        self.columns = columns

    def load_training_state(self, state: dict) -> None:
        """``NormalNN.load_training_state``, after adding the columns the state holds."""
        self.model.grow_like(state["model"])
        self.model.to(self.device, memory_format=self.memory_format)
        super().load_training_state(state)

    # --- outputs --------------------------------------------------------------------------------------------
    def units_added(self) -> Dict[int, List[int]]:
        """Each task's column (by training order): its parameters per convolution, then in its head adapter."""
        return {index: self.model.columns[index].parameters_per_layer() for index in sorted(set(self.columns.values()))}

    def dense_feature_parameters(self) -> int:
        """One dense model's: the flags' model, not the columns."""
        return self.model.dense_feature_parameters
