"""``--loadmodel``: every task of a saved CACL model (ours or the published code's) through its own components,
head and BatchNorm statistics."""
import os
from typing import Dict

from evaluation.results import format_table, write_eval_record
from experiment.builders import build_tasks, evaluation_splits, image_size, load_data, make_agent, output_dims
from experiment.protocols import TaskStream
from experiment.run import results_record
from experiment.saved_model import find_checkpoint, load_checkpoint, svd_ranks
from utils.errors import UserError
from utils.runtime import seed_everything


def saved_agent(args, device, directory, pieces: dict, size: int, out_dim: Dict[str, int]):
    """The CACL agent of a saved checkpoint (``load_checkpoint``'s ``pieces``) for images of ``size`` pixels: its
    model and heads, the components each task uses and the per-task BatchNorm statistics."""
    agent = make_agent(args, device, size, out_dim, {}, state=pieces["state_dict"],
                       source=f"{directory}/final_model.pth")
    if not hasattr(agent, "load_continual_state"):
        raise UserError(f"--loadmodel needs the SVDNet agent (got --agent_type {args.agent_type})")
    agent.load_continual_state(pieces["task_identifiers"], pieces["task_name_count"], pieces["chann_used"])
    agent.load_running_stats(pieces["running_stats"], f"{directory}/batchnorm.pth")
    return agent


def evaluate_checkpoint(args, device, data) -> dict:
    """The results record of the saved model ``--loadmodel`` on the tasks of the data flags."""
    directory = find_checkpoint(args.loadmodel)
    pieces = load_checkpoint(directory)
    seed_everything(args.seed)
    train_splits, test_splits, task_output_space = build_tasks(args, data)
    unknown = [task for task in pieces["task_name_count"] if task not in train_splits]
    if unknown:
        raise UserError(f"{directory} was trained on tasks {', '.join(unknown)}, which --dataset {args.dataset} "
                        f"with these split sizes does not have")
    if svd_ranks(pieces["state_dict"]) != list(pieces["rank"]):
        raise UserError(f"{directory}/rank.pth {list(pieces['rank'])} disagrees with the ranks of final_model.pth "
                        f"{svd_ranks(pieces['state_dict'])}")
    agent = saved_agent(args, device, directory, pieces, image_size(train_splits),
                        output_dims(args, task_output_space))
    names = agent.tasks_trained
    stream = TaskStream(names, train_splits, evaluation_splits(args, train_splits, test_splits), args.batch_size,
                        device)
    return results_record({names[-1]: stream.evaluate(agent, names)}, [agent], len(names))


def evaluate_saved_model(args, device) -> str:
    """Evaluate ``--loadmodel``, write ``results/<its name>/output_eval.json``; returns the table to print."""
    record = evaluate_checkpoint(args, device, load_data(args))
    write_eval_record(os.path.basename(os.path.normpath(args.loadmodel)), record)
    return format_table(f"{args.loadmodel} ({args.dataset} test set)", [record])
