"""``--loadmodel``: every task of a saved model (ours or the published code's) through its own network: its
components, head and BatchNorm statistics; with ``--task_agnostic`` also without its task label, through every
task's network."""
import dataclasses
import os

from evaluation.results import format_table, write_eval_record
from experiment.builders import load_data, make_tasks
from experiment.config import Config
from experiment.protocols import Progress
from experiment.run import results_record
from experiment.saved_model import find_checkpoint, saved_agent
from utils.errors import UserError
from utils.runtime import seed_everything


def evaluate_checkpoint(config: Config, device, data) -> dict:
    """The results record of the saved model ``--loadmodel`` on the tasks of the data flags."""
    directory = find_checkpoint(config.run.loadmodel)
    seed_everything(config.protocol.seed)
    tasks = make_tasks(config, data, device)
    agent = saved_agent(config, device, directory, tasks.image_size, tasks.out_dim)
    names = agent.tasks_trained
    unknown = [task for task in names if task not in tasks.stream.train]
    if unknown:
        raise UserError(f"{directory} was trained on tasks {', '.join(unknown)}, which --dataset "
                        f"{config.data.dataset} with these split sizes does not have")
    stream, progress = dataclasses.replace(tasks.stream, names=names), Progress()
    progress.acc_matrix[names[-1]] = stream.accuracies(progress, names[-1], [(agent, task) for task in names], names)
    return results_record(progress.acc_matrix, [agent], len(names), progress.task_agnostic)


def evaluate_saved_model(config: Config, device) -> str:
    """Evaluate ``--loadmodel``, write ``results/<its name>/output_eval.json``; returns the table to print."""
    record = evaluate_checkpoint(config, device, load_data(config.data))
    write_eval_record(os.path.basename(os.path.normpath(config.run.loadmodel)), record)
    return format_table(f"{config.run.loadmodel} ({config.data.dataset} test set)", [record])
