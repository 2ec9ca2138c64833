"""Results of a run and of a whole experiment: the published JSON files and the table the driver prints."""
import math
import os
import statistics
from typing import Mapping, Optional, Sequence, Tuple

import scipy.stats

from evaluation.metrics import AccuracyMatrix, average_accuracy, bwt, final_accuracies, forgetting
from evaluation.task_agnostic import TABLE_RULE, Matrices, task_agnostic_record
from utils.files import atomic_json_dump

RESULTS_DIR = "results"

PLACE_FLAGS = ("resume", "overwrite", "gpuid", "print_freq", "workers", "dataroot", "benchmark", "cuda_graph",
               "checkpoint_interval", "wandb_project", "wandb_entity", "wandb_group")
"""Flags that say where and how verbosely a run executes, not what it computes: a resumed run may give them
differently, and a report never lists them as differing (``--benchmark`` and ``--cuda_graph`` change the rounding
on a GPU, as another device would, not the computation)."""

PUBLISHED_METHOD_KEYS = {"all_rank": [], "final_rank": []}
"""Keys of the published run record that a method fills (``results_keys``; CACL's ranks), empty for the others."""


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


def run_record(acc_matrix: AccuracyMatrix, channels: Mapping[int, Sequence[int]], method_keys: Mapping,
               model_size: float, dense_models_size: float, task_agnostic: Optional[Matrices] = None) -> dict:
    """``output_run<r>.json``: each task's final accuracy (``final_accuracies``), their average, what each task
    added to each layer (``channels``, by task index in training order; CACL: components per SVD layer), the
    method's own keys (``method_keys``, over ``PUBLISHED_METHOD_KEYS``), the model size and that of one dense model
    per task (MB), the accuracy matrix, and where ``task_agnostic`` holds evaluations without the task label
    (``--task_agnostic``), their record (``evaluation.task_agnostic.task_agnostic_record``)."""
    final = final_accuracies(acc_matrix)
    without_label = {"task_agnostic": task_agnostic_record(task_agnostic)} if task_agnostic else {}
    return {
        "acc": final,
        "avg_acc": average_accuracy(final),
        "channels": {str(task): list(used) for task, used in channels.items()},
        **PUBLISHED_METHOD_KEYS,
        **method_keys,
        "model_size": model_size,
        "dense_models_size": dense_models_size,
        "acc_matrix": acc_matrix,
        **without_label,
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
        **metric_means(runs),
        **final_without_label(runs),
    }


def mean_channels_by_task(runs: Sequence[Mapping]) -> dict:
    """``{task name: [mean over the repeats of the components the task added to each layer]}``; a run's task names
    are its accuracy matrix's rows (the tasks trained, in order; in a record without one, as the published code
    writes, its ``acc``'s), which its ``channels`` index."""
    per_task: dict = {}
    for run in runs:
        for index, task in enumerate(run.get("acc_matrix") or run["acc"]):
            if str(index) in run.get("channels", {}):
                per_task.setdefault(task, []).append(run["channels"][str(index)])
    return {task: [statistics.fmean(layer) for layer in zip(*used)] for task, used in per_task.items()}


def metrics_record(acc_matrix: AccuracyMatrix, task_seconds: Mapping[str, float],
                   images_per_s: Mapping[str, float], model_size_after_task: Mapping[str, float],
                   dense_models_size_after_task: Mapping[str, float], setting: Mapping[str, float],
                   environment: Mapping) -> dict:
    """Keys this project adds to ``output_run<r>.json``: ``bwt`` and ``forgetting`` (``evaluation.metrics``; null
    without an earlier task), ``task_seconds`` (wall-clock seconds each task took to learn), ``seconds`` (their
    sum) and ``images_per_s`` (each task's training images per second of those: a later task slower than the first
    shows at once), the model size (MB) after each task and that of one dense model per task learnt so far, the
    experiment's own value of the method's swept flag (``setting``, e.g. ``{"reg_coef": 100.0}``) and the
    ``environment`` the run ran in (versions, device, threads, git commit, every flag)."""
    return {
        "bwt": bwt(acc_matrix),
        "forgetting": forgetting(acc_matrix),
        "task_seconds": dict(task_seconds),
        "seconds": sum(task_seconds.values()),
        "images_per_s": dict(images_per_s),
        "model_size_after_task": dict(model_size_after_task),
        "dense_models_size_after_task": dict(dense_models_size_after_task),
        "setting": dict(setting),
        "environment": dict(environment),
    }


def mean_and_std(values: Sequence[Optional[float]]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and population standard deviation over the repeats (None, None when one is missing or none is given)."""
    if not values or any(value is None for value in values):
        return None, None
    return statistics.fmean(values), statistics.pstdev(values)


def interval_95(values: Sequence[float]) -> Optional[float]:
    """Half-width of the 95% confidence interval of the mean of ``values`` (independent repeats):
    ``t₀.₉₇₅,ₙ₋₁ · s / √n``, with ``s`` the sample standard deviation (Student's t); None for fewer than two."""
    if len(values) < 2:
        return None
    return float(scipy.stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def metric_means(runs: Sequence[Mapping]) -> dict:
    """Keys this project adds to ``output_final.json``: the means and standard deviations over the repeats of
    ``bwt``, ``forgetting`` and ``seconds``, and each task's mean ``task_seconds`` and ``images_per_s`` (over the
    repeats that recorded it)."""
    means = {}
    for key in ("bwt", "forgetting", "seconds"):
        means[key], means[f"std_{key}"] = mean_and_std([run.get(key) for run in runs])
    for key in ("task_seconds", "images_per_s"):
        tasks = list(runs[0].get(key, {}))
        means[key] = {task: statistics.fmean(run[key][task] for run in runs if task in run.get(key, {}))
                      for task in tasks}
    return means


def final_without_label(runs: Sequence[Mapping]) -> dict:
    """``output_final.json``'s ``task_agnostic``, where every run has one (``--task_agnostic``): per rule, each
    task's final accuracy without the label (``acc``, mean over the repeats), and the mean and (population) standard
    deviation over the repeats of ``avg_acc`` (``std_acc``), ``bwt``, ``forgetting`` and ``task_id_acc``."""
    if not runs or not all("task_agnostic" in run for run in runs):
        return {}
    final = {}
    for rule in runs[0]["task_agnostic"]:
        of_rule = [run["task_agnostic"][rule] for run in runs]
        latest = [final_accuracies(one["acc_matrix"]) for one in of_rule]
        entry = {"acc": {task: statistics.fmean(accuracies[task] for accuracies in latest) for task in latest[0]}}
        entry["avg_acc"], entry["std_acc"] = mean_and_std([one["avg_acc"] for one in of_rule])
        for key in ("bwt", "forgetting", "task_id_acc"):
            entry[key], entry[f"std_{key}"] = mean_and_std([one[key] for one in of_rule])
        final[rule] = entry
    return {"task_agnostic": final}


def format_table(experiment: str, runs: Sequence[Mapping]) -> str:
    """Per-task accuracy (mean ± std over repeats), the average, BWT, forgetting and the model size, as plain
    text; with results without the task label (``--task_agnostic``) a column of them beside the accuracy and a
    line of their task identity, BWT and forgetting, under ``TABLE_RULE`` (FACIL's default)."""
    final = final_record(runs)
    without = final.get("task_agnostic", {}).get(TABLE_RULE)
    lines = [f"{experiment} ({len(runs)} run{'s' if len(runs) > 1 else ''})",
             f"{'task':>8}  {'accuracy %':>14}" + (f"  {'task-agnostic %':>16}" if without else "")]
    for task, mean in final["acc"].items():
        spread = statistics.pstdev(run["acc"][task] for run in runs)
        line = f"{task:>8}  {mean:8.2f} ± {spread:4.2f}"
        if without:
            latest = [final_accuracies(run["task_agnostic"][TABLE_RULE]["acc_matrix"])[task] for run in runs]
            line += f"  {without['acc'][task]:10.2f} ± {statistics.pstdev(latest):4.2f}"
        lines.append(line)
    average = f"{'average':>8}  {final['avg_acc']:8.2f} ± {final['std_acc']:4.2f}"
    lines.append(average + (f"  {without['avg_acc']:10.2f} ± {without['std_acc']:4.2f}" if without else ""))
    lines.append(f"BWT: {format_mean(final['bwt'], final['std_bwt'])}, forgetting: "
                 f"{format_mean(final['forgetting'], final['std_forgetting'])}")
    if without:
        lines.append(f"without the task label ({TABLE_RULE}): task identity "
                     f"{format_mean(without['task_id_acc'], without['std_task_id_acc'])}, BWT "
                     f"{format_mean(without['bwt'], without['std_bwt'])}, forgetting "
                     f"{format_mean(without['forgetting'], without['std_forgetting'])}")
    size, dense = final["model_size"], final["dense_models_size"]
    line = f"model size: {size:.3f} MB"
    if dense > 0 and size > 0:
        line += f" ({len(final['acc'])} individual dense models: {dense:.3f} MB, {dense / size:.1f}x larger)"
    lines.append(line)
    return "\n".join(lines)


def format_mean(mean: Optional[float], std: Optional[float]) -> str:
    """``mean ± std`` (percentage points), or n/a (no earlier task)."""
    return "n/a" if mean is None else f"{mean:.2f} ± {std:.2f}"
