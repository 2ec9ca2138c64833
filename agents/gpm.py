"""``GPM``: Gradient Projection Memory (Saha, Garg & Roy, ICLR 2021), from the authors' code ``sahagobinda/GPM``.

``--agent_type gpm --agent_name GPM``, on the dense ``Net`` or the dense VGG16-BN. After each task every convolution's
memory gains an orthonormal basis of the inputs the task gave it; later tasks change the kernel only orthogonally to
the memory, so those inputs keep giving the outputs they gave (up to the energy the threshold leaves out). The rules,
from ``main_cifar100.py`` (the CIFAR-100 benchmark) unless said:

- Representation matrix (``get_representation_matrix``): after the task, ``--gpm_examples`` (125) of its training
  samples drawn at random, through the model in eval mode; convolution ``l``'s ``R_l`` has a column per example and
  output position, the input patch the kernel sees there (``in·k·k`` values ordered as ``weight.reshape(out, -1)``;
  its zero padding included, as ``main_five_dataset.py`` pads).
- Threshold of the t-th task (t from 0): ``ε_t = gpm_threshold + t · gpm_threshold_increment`` (``main``:
  0.97 + 0.003·t; 0.965 + 0 in ``main_five_dataset.py``, 0.95-0.99 in ``main_pmnist.py``).
- New bases (``update_GPM``): after the first task, ``R_l = U Σ Vᵀ`` and ``M_l = U[:, :r]`` with
  ``r = #{i : Σ_{j≤i} σ_j² / ‖R_l‖² < ε}`` (Eq. 5). After a later one, ``R̂ = R_l − M_l M_lᵀ R_l = Û Σ̂ V̂ᵀ``;
  starting from ``a = (‖R_l‖² − ‖R̂‖²) / ‖R_l‖²``, ``σ̂_i² / ‖R_l‖²`` is added while ``a < ε``: ``r`` bases,
  ``M_l ← [M_l, Û[:, :r]]``, at most ``in·k·k`` columns (Eq. 8-9). The first task's count is one less than the later
  rule gives on the same spectrum, as published.
- Projection (``train_projected``): a kernel's gradient ``G`` (``out × in·k·k``) becomes ``G − G M_l M_lᵀ``;
  1-D parameters (biases, BatchNorm's) learn with the first task only; heads are neither projected nor frozen.
- Defaults (``main``, ``get_representation_matrix``): ``ε`` 0.97 + 0.003 per task, 125 examples.

Where this differs from the authors' code:

- The protection is also applied to the step: after every optimizer step, the kernel's change ``Δ`` becomes
  ``Δ − Δ M_l M_lᵀ`` (``after_step``), so that Adam's per-coordinate scaling, momentum or weight decay cannot take
  it out of the free subspace. Under plain SGD ``Δ = −lr·(G − G M_l M_lᵀ)`` is in it already: the published rule.
  The 1-D parameters are left out of the optimizer after the first task (published: their gradient is zeroed).
- ``R_l`` is not formed: ``U`` and ``σ²`` are the eigenvectors and eigenvalues of ``R_l R_lᵀ``, summed over patches
  in float64, so every layer uses every example (the published code gives its first convolutions fewer examples,
  ``batch_list``, to keep ``R_l`` small).
- A direction the inputs do not have (``σ² ≤ in·k·k · ε_float64 · σ_max²``) never becomes a basis: from the 11th
  task on the published schedule ``ε_t`` passes 1, and the published loop would then append arbitrary vectors.
- BatchNorm (VGG16-BN): the published networks' BatchNorms keep no statistics (``track_running_stats=False``: batch
  statistics in training and evaluation); here, from the second task on, they run in eval mode with the statistics
  the first task left, so that with their weights and biases (frozen with the other 1-D parameters) they are a fixed
  map and the projection protects what the earlier tasks compute (as PackNet's ``train_nobn``).
- Fully-connected layers: the dense ``Net`` and VGG16-BN have none outside the heads, so only convolutions have a
  memory (the published ``fc1``/``fc2`` rule, a column per example, is not needed).
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from agents.batchnorm import batchnorm_layers
from agents.default import LoopSettings
from agents.model_size import dense_size_mb
from agents.saved_state import SavedContinualState
from models import check_dense_model
from models.multihead import MultiHeadNet
from utils.flags import above_zero_up_to_one, at_least_zero, flag, positive

GRAM_EXAMPLES = 10
"""Examples whose patches are summed into the Gram matrices at a time (bounds the memory the patches take)."""


@dataclass
class GPMSettings(LoopSettings):
    """GPM's own flags (the defaults of the authors' CIFAR-100 benchmark, ``main_cifar100.py``)."""

    gpm_threshold: float = flag(0.97, "energy of a layer's inputs its memory keeps after the first task",
                                valid=above_zero_up_to_one, requirement="must lie in (0, 1]")
    gpm_threshold_increment: float = flag(0.003, "added to --gpm_threshold for each later task", valid=at_least_zero,
                                          requirement="must be 0 or more")
    gpm_examples: int = flag(125, "training samples of a task its representation matrices are made of",
                             valid=positive, requirement="must be positive")


def convolutions(model: MultiHeadNet) -> List[nn.Conv2d]:
    """The model's feature convolutions, in order."""
    return [layer for layer in model.feature_layers() if isinstance(layer, nn.Conv2d)]


def patch_gram(inputs: torch.Tensor, convolution: nn.Conv2d) -> torch.Tensor:
    """``R Rᵀ`` in float64, ``R`` the convolution's patches of ``inputs`` as columns (``in·k·k`` rows)."""
    patches = F.unfold(inputs, convolution.kernel_size, convolution.dilation, convolution.padding,
                       convolution.stride).double()
    return torch.einsum("npl,nql->pq", patches, patches)


def spectrum(gram: torch.Tensor):
    """``(σ², U)`` of ``R`` from ``gram = R Rᵀ``: eigenvalues in decreasing order (negative rounding set to 0) and
    their eigenvectors; and how many eigenvalues are above rounding (``dim · ε_float64 · the largest``)."""
    values, vectors = torch.linalg.eigh(gram)
    values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)
    present = int((values > len(values) * torch.finfo(values.dtype).eps * values[0]).sum())
    return values, vectors, present


def new_bases(gram: torch.Tensor, memory: Optional[torch.Tensor], threshold: float) -> torch.Tensor:
    """The bases a task adds to a layer's memory (module docstring, *New bases*), from ``gram = R Rᵀ`` (float64)
    and the layer's memory ``M`` (None before the first task)."""
    total = gram.trace()
    if memory is None:
        values, vectors, present = spectrum(gram)
        count = int((values.cumsum(0) / total < threshold).sum())
    else:
        M = memory.double()
        free = torch.eye(len(gram), dtype=gram.dtype, device=gram.device) - M @ M.T
        values, vectors, present = spectrum(free @ gram @ free)
        captured = (total - values.sum()) / total
        before_each = captured + torch.cat([values.new_zeros(1), values.cumsum(0)[:-1]]) / total
        count = min(int((before_each < threshold).sum()), len(gram) - M.shape[1])
    return vectors[:, :min(count, present)]


def span_part(tensor: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """``T M Mᵀ`` for a kernel-shaped ``tensor`` read as ``out × in·k·k``, in the kernel's shape."""
    flat = tensor.reshape(len(tensor), -1)
    return ((flat @ memory) @ memory.T).view(tensor.shape)


class GPM(SavedContinualState):
    """Gradient Projection Memory on a dense network (rules and sources: the module docstring).

    Continual-learning state: ``memory``, each convolution's bases ``M_l`` (``in·k·k × k_l``, float32; None before
    the first task), and ``bases_added`` {task index: bases each layer gained}.
    """

    Settings = GPMSettings
    STATE_FILE = "gpm.pth"

    def __init__(self, model: MultiHeadNet, settings: GPMSettings):
        super().__init__(model, settings)
        self.convolutions = convolutions(self.model)
        self.memory: Optional[List[torch.Tensor]] = None
        self.bases_added: Dict[int, List[int]] = {}
        self.kernels_before_step: List[torch.Tensor] = []

    @classmethod
    def check_model(cls, model_type: str, model_name: str) -> None:
        check_dense_model(model_type, model_name, "GPM")

    # --- training -------------------------------------------------------------------------------------------
    def trainable_parameters(self, task: str) -> List[nn.Parameter]:
        """After the first task, the 1-D parameters of the feature layers (biases, BatchNorm's) are left out."""
        parameters = super().trainable_parameters(task)
        if self.memory is None:
            return parameters
        frozen = {id(p) for name, p in self.model.named_parameters() if not name.startswith("last.") and p.dim() == 1}
        return [p for p in parameters if id(p) not in frozen]

    def begin_epoch(self, task: str, epoch: int) -> None:
        """BatchNorm in eval mode once a memory exists (its statistics stay the first task's)."""
        if self.memory is not None:
            for layer in batchnorm_layers(self.model):
                layer.eval()

    def backward(self, terms: Dict[str, torch.Tensor]) -> None:
        """The loss's gradients, each kernel's projected orthogonally to its memory (the published rule); the
        kernels are kept for ``after_step``."""
        super().backward(terms)
        if self.memory is None:
            return
        with torch.no_grad():
            for convolution, memory in zip(self.convolutions, self.memory):
                if convolution.weight.grad is not None:
                    convolution.weight.grad -= span_part(convolution.weight.grad, memory)
            self.kernels_before_step = [convolution.weight.clone() for convolution in self.convolutions]

    @torch.no_grad()
    def after_step(self) -> None:
        """The step's change of each kernel, ``Δ``, made ``Δ − Δ M Mᵀ``: whatever the optimizer did, no kernel moves
        within its memory."""
        if self.memory is None:
            return
        for convolution, memory, before in zip(self.convolutions, self.memory, self.kernels_before_step):
            convolution.weight -= span_part(convolution.weight - before, memory)

    # --- after a task ---------------------------------------------------------------------------------------
    def consolidate(self, task: str, train_loader) -> None:
        """Each layer's memory gains the bases of the task's representation matrix (``new_bases``), at the task's
        threshold ``ε_t``."""
        super().consolidate(task, train_loader)
        settings = self.settings
        chosen = torch.randperm(train_loader.num_samples)[:settings.gpm_examples]
        grams = self.representation_grams(train_loader.samples(chosen)[0])
        threshold = settings.gpm_threshold + len(self.tasks_trained) * settings.gpm_threshold_increment
        memory = self.memory or [None] * len(grams)
        added = [new_bases(gram, layer_memory, threshold) for gram, layer_memory in zip(grams, memory)]
        self.memory = [new.float() if old is None else torch.cat([old, new.float()], 1)
                       for old, new in zip(memory, added)]
        self.bases_added[len(self.tasks_trained)] = [new.shape[1] for new in added]

    @torch.no_grad()
    def representation_grams(self, inputs: torch.Tensor) -> List[torch.Tensor]:
        """``R_l R_lᵀ`` (float64) of each convolution for ``inputs``, the model in eval mode."""
        grams = [torch.zeros(c.weight[0].numel(), c.weight[0].numel(), dtype=torch.float64, device=self.device)
                 for c in self.convolutions]

        def add_patches(index):
            def hook(convolution, arguments):
                grams[index].add_(patch_gram(arguments[0], convolution))
            return hook

        handles = [c.register_forward_pre_hook(add_patches(index)) for index, c in enumerate(self.convolutions)]
        was_training = self.model.training
        self.model.eval()
        try:
            for chunk in inputs.split(GRAM_EXAMPLES):
                self.model.features(chunk.contiguous(memory_format=self.memory_format))
        finally:
            self.model.train(was_training)
            for handle in handles:
                handle.remove()
        return grams

    # --- state ----------------------------------------------------------------------------------------------
    def continual_state(self) -> Dict[str, Any]:
        return {"gpm_memory": self.memory, "gpm_bases_added": self.bases_added}

    def load_continual_state(self, state: Mapping[str, Any]) -> None:
        memory = state["gpm_memory"]
        self.memory = None if memory is None else [bases.to(self.device) for bases in memory]
        self.bases_added = {int(index): list(added) for index, added in state["gpm_bases_added"].items()}

    # --- outputs --------------------------------------------------------------------------------------------
    def units_added(self) -> Dict[int, List[int]]:
        """The bases each task added to each convolution's memory."""
        return self.bases_added

    def results_keys(self) -> Dict[str, Any]:
        """``gpm_bases``: each convolution's bases at the end; ``gpm_memory_mb``: their size (float32), memory
        training keeps besides the model (evaluation needs none of it, so ``model_size`` leaves it out)."""
        if self.memory is None:
            bases = [0] * len(self.convolutions)
        else:
            bases = [layer_memory.shape[1] for layer_memory in self.memory]
        numbers = sum(convolution.weight[0].numel() * k for convolution, k in zip(self.convolutions, bases))
        return {"gpm_bases": bases, "gpm_memory_mb": dense_size_mb(numbers)}
