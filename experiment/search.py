"""The published ``--debug`` search modes: how accuracy and components used trade off on the first task, over
sparsity weights (training the task anew for each) or over pruning energies (one trained model, pruned many ways)."""
import logging
from dataclasses import asdict, dataclass
from typing import Callable, List

import numpy as np

from agents import NormalNN
from evaluation.results import results_directory
from evaluation.searches import write_search
from experiment.builders import make_agent, make_tasks
from experiment.config import Config, Experiment
from experiment.protocols import TaskStream
from models.deployable import count_multiply_adds
from utils.runtime import seed_everything

log = logging.getLogger(__name__)

SPARSITY_POINTS = 10
ENERGY_POINTS = 20


@dataclass
class SearchPoint:
    value: float       # the swept flag's value (the sparsity weight) or the pruning energy tried
    components: int    # components the first task kept, over all SVD layers (its units_added)
    accuracy: float    # accuracy (%) of the first task through its kept components
    macs: int          # multiply-adds of the first task's network on one input (models.deployable)


def measure_first_task(value: float, agent: NormalNN, stream: TaskStream) -> SearchPoint:
    """The search point of ``value``: the first task's components, accuracy and multiply-adds, as ``agent`` has it."""
    first = stream.names[0]
    data = stream.evaluation[first]
    input_shape = data.transform(data.images[:1]).shape[1:]
    point = SearchPoint(value, sum(agent.units_added()[0]), agent.evaluate(stream.eval_loader(first)),
                        count_multiply_adds(agent.task_network(first), input_shape))
    log.info("%.4g: %d components, accuracy %.2f%%, %d multiply-adds", *vars(point).values())
    return point


def sparsity_search(make_agent: Callable[[float], NormalNN], stream: TaskStream, low: float,
                    high: float) -> List[SearchPoint]:
    """Train the first task once for each of ``SPARSITY_POINTS`` values of the swept flag (the sparsity weight)
    evenly spaced in [low, high]."""
    first = stream.names[0]
    points = []
    for weight in np.linspace(low, high, SPARSITY_POINTS):
        agent = make_agent(float(weight))
        agent.learn_task(first, stream.train_loader(first))
        points.append(measure_first_task(float(weight), agent, stream))
    return points


def energy_search(trained: NormalNN, stream: TaskStream, low: float, high: float) -> List[SearchPoint]:
    """Prune one model trained on the first task (not yet pruned) at ``ENERGY_POINTS`` energies evenly spaced in
    [low, high] (``np.linspace``, as published; the method's ``pruned_copy``), and evaluate the first task through
    what each keeps."""
    first = stream.names[0]
    return [measure_first_task(float(energy), trained.pruned_copy(first, float(energy)), stream)
            for energy in np.linspace(low, high, ENERGY_POINTS)]


def run_search(config: Config, device, data) -> str:
    """``--debug``: the energy search on ``--model_weights`` when given, else the search over the swept flag;
    writes ``results/<exp_name>_<search>/`` and returns the table to print."""
    seed_everything(config.protocol.seed)
    tasks = make_tasks(config, data, device)
    flag = config.swept_flag
    searches = config.searches

    def agent_of(value: float) -> NormalNN:
        return make_agent(config, Experiment("", {flag: value}), device, tasks.image_size, tasks.out_dim)

    if config.model.model_weights:
        trained = agent_of(config.flags[flag][0])
        name, parameter = "e_search", "energy_sv"
        points = energy_search(trained, tasks.stream, *searches.e_search)
    else:
        name, parameter = "sp_wt_search", flag
        points = sparsity_search(agent_of, tasks.stream, *searches.sp_wt_search)
    return write_search([asdict(point) for point in points], name, parameter,
                        results_directory(f"{config.run.exp_name}_{name}"))
