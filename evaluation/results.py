"""Results of a run and of a whole experiment: the published JSON files and the table the driver prints."""
import os
import statistics
from typing import Mapping, Sequence

from evaluation.metrics import AccuracyMatrix, average_accuracy, final_accuracies
from utils.files import atomic_json_dump

RESULTS_DIR = "results"


def results_directory(experiment: str) -> str:
    """``results/<experiment>/``, under the working directory."""
    return os.path.join(RESULTS_DIR, experiment)


def final_record_path(experiment: str) -> str:
    return os.path.join(results_directory(experiment), "output_final.json")


def write_run_record(experiment: str, repeat: int, record: dict) -> None:
    atomic_json_dump(record, os.path.join(results_directory(experiment), f"output_run{repeat}.json"))


def write_final_record(experiment: str, runs: Sequence[Mapping]) -> None:
    atomic_json_dump(final_record(runs), final_record_path(experiment))


def write_eval_record(name: str, record: dict) -> None:
    """What ``--loadmodel`` measured: ``results/<name>/output_eval.json``."""
    atomic_json_dump(record, os.path.join(results_directory(name), "output_eval.json"))


def run_record(acc_matrix: AccuracyMatrix, channels: Mapping[int, Sequence[int]], all_rank: Sequence[int],
               final_rank: Sequence[int], model_size: float, dense_models_size: float) -> dict:
    """``output_run<r>.json``: each task's final accuracy (``final_accuracies``), their average, the components each
    task added per SVD layer (``channels``, by task index in training order), each SVD layer's rank by the formula
    (``all_rank``, as published: divide by it for compression ratios) and at the end (``final_rank``), the model
    size and that of one dense model per task (MB), and the accuracy matrix."""
    final = final_accuracies(acc_matrix)
    return {
        "acc": final,
        "avg_acc": average_accuracy(final),
        "channels": {str(task): list(used) for task, used in channels.items()},
        "all_rank": list(all_rank),
        "final_rank": list(final_rank),
        "model_size": model_size,
        "dense_models_size": dense_models_size,
        "acc_matrix": acc_matrix,
    }


def final_record(runs: Sequence[Mapping]) -> dict:
    """``output_final.json``: means over the repeats, with the standard deviation of the average accuracy, and
    ``chann`` (published): per task name, the components each layer gained for that task, averaged over the repeats."""
    averages = [run["avg_acc"] for run in runs]
    tasks = list(runs[0]["acc"])
    return {
        "acc": {task: statistics.fmean(run["acc"][task] for run in runs) for task in tasks},
        "avg_acc": statistics.fmean(averages),
        "std_acc": statistics.pstdev(averages),
        "all_avg_acc": averages,
        "model_size": statistics.fmean(run["model_size"] for run in runs),
        "dense_models_size": statistics.fmean(run["dense_models_size"] for run in runs),
        "chann": mean_channels_by_task(runs),
        "repeats": len(runs),
    }


def mean_channels_by_task(runs: Sequence[Mapping]) -> dict:
    """``{task name: [mean over the repeats of the components the task added to each layer]}``; a run's task names
    are its accuracy matrix's rows (the tasks trained, in order), which its ``channels`` index."""
    per_task: dict = {}
    for run in runs:
        for index, task in enumerate(run["acc_matrix"]):
            if str(index) in run["channels"]:
                per_task.setdefault(task, []).append(run["channels"][str(index)])
    return {task: [statistics.fmean(layer) for layer in zip(*used)] for task, used in per_task.items()}


def format_table(experiment: str, runs: Sequence[Mapping]) -> str:
    """Per-task accuracy (mean ± std over repeats), the average and the model size, as plain text."""
    final = final_record(runs)
    lines = [f"{experiment} ({len(runs)} run{'s' if len(runs) > 1 else ''})", f"{'task':>8}  {'accuracy %':>14}"]
    for task, mean in final["acc"].items():
        spread = statistics.pstdev(run["acc"][task] for run in runs)
        lines.append(f"{task:>8}  {mean:8.2f} ± {spread:4.2f}")
    lines.append(f"{'average':>8}  {final['avg_acc']:8.2f} ± {final['std_acc']:4.2f}")
    size, dense = final["model_size"], final["dense_models_size"]
    line = f"model size: {size:.3f} MB"
    if dense > 0 and size > 0:
        line += f" ({len(final['acc'])} individual dense models: {dense:.3f} MB, {dense / size:.1f}x larger)"
    lines.append(line)
    return "\n".join(lines)

