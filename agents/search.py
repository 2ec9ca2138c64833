"""The published ``--debug`` search modes: how accuracy and components used trade off on the first task, over
sparsity weights (training the task anew for each) or over pruning energies (one trained model, pruned many ways)."""
import copy
import logging
from dataclasses import dataclass
from typing import Callable, List, Sequence

import numpy as np

from agents.default import NormalNN
from agents.protocols import TaskStream

log = logging.getLogger(__name__)

SPARSITY_POINTS = 10
ENERGY_POINTS = 20


@dataclass
class SearchPoint:
    value: float       # the sparsity weight or the pruning energy tried
    components: int    # components the first task kept, over all SVD layers
    accuracy: float    # accuracy (%) of the first task through its kept components


def kept_components(agent: NormalNN) -> int:
    return sum(agent.task_identifiers[0])


def sparsity_search(make_agent: Callable[[float], NormalNN], stream: TaskStream, low: float,
                    high: float) -> List[SearchPoint]:
    """Train the first task once for each of ``SPARSITY_POINTS`` sparsity weights evenly spaced in [low, high]."""
    first = stream.names[0]
    points = []
    for weight in np.linspace(low, high, SPARSITY_POINTS):
        agent = make_agent(float(weight))
        agent.learn_task(first, stream.train_loader(first))
        points.append(SearchPoint(float(weight), kept_components(agent), agent.evaluate(stream.eval_loader(first))))
        log.info("sparse_wt %.4g: %d components, accuracy %.2f%%", *vars(points[-1]).values())
    return points


def energy_search(trained: NormalNN, stream: TaskStream, low: float, high: float) -> List[SearchPoint]:
    """Prune one model trained on the first task (not yet pruned) at ``ENERGY_POINTS`` energies, log-spaced in
    [low, high], and evaluate the first task through what each keeps."""
    first = stream.names[0]
    points = []
    for energy in np.logspace(np.log10(low), np.log10(high), ENERGY_POINTS):
        agent = copy.deepcopy(trained)
        agent.config.energy_sv = float(energy)
        agent.end_task(first)
        points.append(SearchPoint(float(energy), kept_components(agent), agent.evaluate(stream.eval_loader(first))))
        log.info("energy %.3g: %d components, accuracy %.2f%%", *vars(points[-1]).values())
    return points


def plot_search(points: Sequence[SearchPoint], parameter: str, path: str) -> None:
    """Accuracy against components kept, each point labelled with its parameter value, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([p.components for p in points], [p.accuracy for p in points], "o-")
    for point in points:
        axes.annotate(f"{point.value:.2g}", (point.components, point.accuracy), fontsize=7,
                      textcoords="offset points", xytext=(3, 3))
    axes.set_xlabel("components kept (all SVD layers)")
    axes.set_ylabel("accuracy of the first task (%)")
    axes.set_title(f"accuracy against components over {parameter}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
