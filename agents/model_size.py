"""Model size in MB: CACL's, as the paper reports it from the components each task added, and dense models'."""
from typing import Mapping, Sequence, Tuple

from models.svd_conv import SVD_Conv2d

BYTES_PER_NUMBER = 4
BATCHNORM_NUMBERS = 4
"""A BatchNorm channel's numbers: weight, bias, running mean and running variance."""
PUBLISHED_TASKS = 20
"""The published formula stores each BatchNorm channel's numbers for 20 tasks, whatever the number of tasks
(``m.weight.shape[0] * 4 * 20`` in ``agents/SVDNet.py: mode_comp``): the per-task statistics of the 20-task
benchmarks."""
BATCHNORM_NUMBERS_PER_CHANNEL = BATCHNORM_NUMBERS * PUBLISHED_TASKS


def cacl_model_size_mb(layers: Sequence[Tuple[int, int]], chann_used: Mapping[int, Sequence[int]],
                       head_parameters: int, batchnorm_channels: Sequence[int] = ()) -> float:
    """``4 B × [Σ_l (in·k·k·cum_l + out·cum_l + cum_l) + heads + 80·Σ BN channels + tasks·layers] / 1e6``.

    80 = ``BATCHNORM_NUMBERS_PER_CHANNEL``: the 4 numbers of a BatchNorm channel for each of ``PUBLISHED_TASKS``.

    ``layers`` holds ``(in·k·k, out)`` per SVD layer, ``cum_l`` is the number of components of layer ``l`` used by
    all tasks together (``chann_used`` summed over tasks), ``heads`` the number of weights and biases of every head,
    and ``tasks·layers`` stores each task's prefix lengths. The published ``chann_used.pth`` files give 8.53 MB
    (CIFAR-100) and 13.03 MB (miniImageNet).
    """
    cumulative = [sum(used[layer] for used in chann_used.values()) for layer in range(len(layers))]
    factors = sum(fan_in * cum + out * cum + cum for (fan_in, out), cum in zip(layers, cumulative))
    numbers = (factors + head_parameters + BATCHNORM_NUMBERS_PER_CHANNEL * sum(batchnorm_channels)
               + len(chann_used) * len(layers))
    return BYTES_PER_NUMBER * numbers / 1e6


def dense_size_mb(parameters: int) -> float:
    """``4 B × parameters / 1e6``: the size of a model stored densely."""
    return BYTES_PER_NUMBER * parameters / 1e6


def dense_feature_parameters(model) -> int:
    """Parameters of the model's feature extractor (heads excluded) with every SVD layer stored as a dense kernel."""
    factors = set()
    dense = 0
    for module in model.modules():
        if isinstance(module, SVD_Conv2d):
            factors.update(id(p) for p in (module.N, module.C, module.Sigma))
            dense += module.fan_in * module.output_channel
    others = sum(p.numel() for name, p in model.named_parameters()
                 if not name.startswith("last.") and id(p) not in factors)
    return dense + others


def individual_models_size_mb(feature_parameters: int, n_tasks: int, head_parameters: int) -> float:
    """Size of one dense model per task: ``n_tasks`` dense feature extractors of ``feature_parameters`` parameters
    each (``dense_feature_parameters``), and every task's head (``head_parameters`` weights and biases in all)."""
    return dense_size_mb(n_tasks * feature_parameters + head_parameters)
