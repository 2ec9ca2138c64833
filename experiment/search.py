"""The published ``--debug`` search modes: how accuracy and components used trade off on the first task, over
sparsity weights (training the task anew for each) or over pruning energies (one trained model, pruned many ways)."""
import copy
import logging
from dataclasses import asdict, dataclass
from typing import Callable, List

import numpy as np

from agents import NormalNN
from evaluation.results import results_directory
from evaluation.searches import write_search
from experiment.builders import build_tasks, evaluation_splits, image_size, make_agent, output_dims, task_order
from experiment.protocols import TaskStream
from models.deployable import count_multiply_adds
from utils.runtime import seed_everything

log = logging.getLogger(__name__)

SPARSITY_POINTS = 10
ENERGY_POINTS = 20


@dataclass
class SearchPoint:
    value: float       # the sparsity weight or the pruning energy tried
    components: int    # components the first task kept, over all SVD layers
    accuracy: float    # accuracy (%) of the first task through its kept components
    macs: int          # multiply-adds of the first task's network on one input (models.deployable)


def measure_first_task(value: float, agent: NormalNN, stream: TaskStream) -> SearchPoint:
    """The search point of ``value``: the first task's components, accuracy and multiply-adds, as ``agent`` has it."""
    first = stream.names[0]
    data = stream.evaluation[first]
    input_shape = data.transform(data.images[:1]).shape[1:]
    point = SearchPoint(value, sum(agent.task_identifiers[0]), agent.evaluate(stream.eval_loader(first)),
                        count_multiply_adds(agent.task_network(first), input_shape))
    log.info("%.4g: %d components, accuracy %.2f%%, %d multiply-adds", *vars(point).values())
    return point


def sparsity_search(make_agent: Callable[[float], NormalNN], stream: TaskStream, low: float,
                    high: float) -> List[SearchPoint]:
    """Train the first task once for each of ``SPARSITY_POINTS`` sparsity weights evenly spaced in [low, high]."""
    first = stream.names[0]
    points = []
    for weight in np.linspace(low, high, SPARSITY_POINTS):
        agent = make_agent(float(weight))
        agent.learn_task(first, stream.train_loader(first))
        points.append(measure_first_task(float(weight), agent, stream))
    return points


def energy_search(trained: NormalNN, stream: TaskStream, low: float, high: float) -> List[SearchPoint]:
    """Prune one model trained on the first task (not yet pruned) at ``ENERGY_POINTS`` energies evenly spaced in
    [low, high] (``np.linspace``, as published), and evaluate the first task through what each keeps."""
    first = stream.names[0]
    points = []
    for energy in np.linspace(low, high, ENERGY_POINTS):
        agent = copy.deepcopy(trained)
        agent.settings.energy_sv = float(energy)
        agent.end_task(first)
        points.append(measure_first_task(float(energy), agent, stream))
    return points


def run_search(args, device, data) -> str:
    """``--debug``: the energy search on ``--model_weights`` when given, else the sparsity-weight search; writes
    ``results/<exp_name>_<search>/`` and returns the table to print."""
    seed_everything(args.seed)
    train_splits, test_splits, task_output_space = build_tasks(args, data)
    stream = TaskStream(task_order(args, list(train_splits)), train_splits,
                        evaluation_splits(args, train_splits, test_splits), args.batch_size, device)
    out_dim = output_dims(args, task_output_space)
    size = image_size(train_splits)
    if args.model_weights:
        trained = make_agent(args, device, size, out_dim, {"sparse_wt": args.sparse_wt[0]})
        name, parameter, points = "e_search", "energy_sv", energy_search(trained, stream, *args.e_search)
    else:
        def agent_of(weight: float) -> NormalNN:
            return make_agent(args, device, size, out_dim, {"sparse_wt": weight})

        points = sparsity_search(agent_of, stream, *args.sp_wt_search)
        name, parameter = "sp_wt_search", "sparse_wt"
    return write_search([asdict(point) for point in points], name, parameter,
                        results_directory(f"{args.exp_name}_{name}"))
