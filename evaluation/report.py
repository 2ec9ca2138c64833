"""``python -m evaluation.report RESULTS_DIR [RESULTS_DIR ...] --out DIR``: figures and a Markdown summary of
finished experiments, each a ``results/<exp>/`` folder of this project or of the published code.

Writes into DIR: ``summary.md`` (one row per experiment: method, the flags that differ between the experiments,
accuracy ± std over the repeats, BWT, forgetting, model size, training time; where the results hold them
(``--task_agnostic``), a table of the accuracies with and without the task label; the figures linked),
``accuracy_vs_size.png`` (one point per experiment), ``over_tasks.png`` (accuracy and size after each task),
``task_agnostic.png`` (with and without the task label), and per experiment ``accuracy_matrix_<exp>.png`` (repeat
0's accuracy matrix), ``components_<exp>.png`` (CACL: components kept per SVD layer after each task) and
``model_size_<exp>.png`` (size after each task against one dense model per task). The figures name each experiment
by its method and the flags that tell it from the others of that method (``labels``). A figure whose numbers the
results do not hold (the published format has no accuracy matrix and no size per task) is skipped with a note.
"""
import dataclasses
import json
import os
import statistics
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from evaluation import figures
from evaluation.metrics import bwt, forgetting
from evaluation.results import PLACE_FLAGS, interval_95, mean_and_std
from evaluation.task_agnostic import RULES, TABLE_RULE
from models.multihead import ALL_TASKS
from utils.errors import ArgumentParser, UserError, run_command
from utils.files import atomic_write_bytes
from utils.flags import format_values

RUN_FILE = re.compile(r"output_run(\d+)\.json")
FINAL_FILE = "output_final.json"
SUMMARY = "summary.md"
WITHOUT_LABEL_FIGURE = "task_agnostic.png"
UNCOMPARED_FLAGS = ("exp_name", *PLACE_FLAGS)
"""Flags never listed as differing: where and how verbosely an experiment ran, and its name."""
METHOD_CHOICE = ("agent_type", "agent_name", "model_type", "model_name")
"""Flags a label leaves out: the method's name says the first two, and its model follows from them."""

Stat = Tuple[Optional[float], Optional[float]]
"""Mean and standard deviation over the repeats (None where the results do not hold the number)."""


@dataclass
class Experiment:
    """A results folder: its runs (``output_run<r>.json``, by repeat) and ``output_final.json`` ({} if absent)."""

    name: str
    runs: List[dict]
    final: dict
    notes: List[str] = field(default_factory=list)

    def flags(self, swept: Sequence[str]) -> Optional[dict]:
        """The flags the first run was given, of the ``swept`` ones only this experiment's own value (its
        ``setting``); None if unrecorded."""
        if not self.runs or "environment" not in self.runs[0]:
            return None
        flags = {name: value for name, value in self.runs[0]["environment"]["flags"].items() if name not in swept}
        return {**flags, **self.runs[0]["setting"]}


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}") from None


def read_experiment(folder: str) -> Experiment:
    """The results in ``folder``, with a one-line error when it holds none."""
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: no such results folder (give results/<experiment> folders)")
    numbered = sorted((int(match.group(1)), name) for name in os.listdir(folder)
                      for match in [RUN_FILE.fullmatch(name)] if match)
    runs = [read_json(os.path.join(folder, name)) for _, name in numbered]
    final_path = os.path.join(folder, FINAL_FILE)
    final = read_json(final_path) if os.path.isfile(final_path) else {}
    if not runs and not final:
        raise UserError(f"{folder} holds no results (no output_run<r>.json or {FINAL_FILE}): give a finished "
                        f"experiment's results/<experiment> folder")
    return Experiment(os.path.basename(os.path.normpath(folder)), runs, final)


def over_repeats(experiment: Experiment, key: str, std_key: str, of_run: Callable[[dict], Optional[float]]) -> Stat:
    """``output_final.json``'s ``key`` and ``std_key`` when it holds them, else the mean and population standard
    deviation of ``of_run`` over the runs (None if a run lacks it)."""
    if key in experiment.final:
        return experiment.final[key], experiment.final.get(std_key)
    return mean_and_std([of_run(run) for run in experiment.runs])


def from_matrix(metric: Callable, key: str) -> Callable[[dict], Optional[float]]:
    """A run's ``key``, or ``metric`` of its accuracy matrix where it holds one but not the key."""
    def of_run(run: dict) -> Optional[float]:
        if key in run:
            return run[key]
        return metric(run["acc_matrix"]) if "acc_matrix" in run else None

    return of_run


def swept_flags(experiments: Sequence[Experiment]) -> List[str]:
    """The flags that some experiment's runs swept (the keys of their records' ``setting``)."""
    return sorted({name for experiment in experiments for run in experiment.runs[:1]
                   for name in run.get("setting", {})})


def method(experiment: Experiment, swept: Sequence[str]) -> str:
    """The method by its name in the papers (``environment.method``: ``CACL``, ``fine-tuning``, ``EWC``...; the
    agent's class where the results do not record it), and the protocol when it is not the sequential one."""
    flags = experiment.flags(swept)
    if flags is None:
        return "SVDNet (no flags recorded)" if experiment.runs and experiment.runs[0].get("channels") else \
            "unknown (no flags recorded)"
    protocols = [label for flag, label in (("ind_models", "separate models"), ("offline_training", "joint training"))
                 if flags.get(flag)]
    title = experiment.runs[0]["environment"].get("method", flags["agent_name"])
    return title + "".join(f" ({label})" for label in protocols)


def labels(experiments: Sequence[Experiment]) -> Dict[str, str]:
    """What the figures and the table without the label call each experiment: its ``method``, followed, where
    several experiments share that, by the flags that differ between those (``differing_flags`` among them, the
    method's choice and model aside: ``EWC --reg_coef 100.0``), and by its folder's name where even those agree."""
    swept = swept_flags(experiments)
    by_method: Dict[str, List[Experiment]] = {}
    for experiment in experiments:
        by_method.setdefault(method(experiment, swept), []).append(experiment)
    named = {}
    for title, group in by_method.items():
        flags = differing_flags(group, leave_out=METHOD_CHOICE) if len(group) > 1 else {}
        for experiment in group:
            named[experiment.name] = f"{title} {flags.get(experiment.name, '')}".strip()
    alike = [name for name, label in named.items() if list(named.values()).count(label) > 1]
    return {**named, **{name: f"{named[name]} ({name})" for name in alike}}


def method_flags(experiment: Experiment) -> Optional[List[str]]:
    """The flags only some methods read that this experiment's method does (``environment.method_flags``); None
    where the results do not record them (older results, the published code's)."""
    if not experiment.runs:
        return None
    return experiment.runs[0].get("environment", {}).get("method_flags")


def differing_flags(experiments: Sequence[Experiment], leave_out: Sequence[str] = ()) -> Dict[str, str]:
    """For each experiment, ``--flag value`` of every flag whose value differs between the experiments that recorded
    their flags (but those of ``leave_out``); a flag that only some methods read (``method_flags``) only for the
    experiments whose method reads it (GEM's ``--memory_size``, not fine-tuning's unread default)."""
    swept = swept_flags(experiments)
    recorded = {experiment.name: experiment.flags(swept) for experiment in experiments
                if experiment.flags(swept) is not None}
    read = {experiment.name: method_flags(experiment) for experiment in experiments}
    of_some_methods = {flag for flags in read.values() if flags for flag in flags}
    names = sorted({name for flags in recorded.values() for name in flags} - {*UNCOMPARED_FLAGS, *leave_out})
    differ = [name for name in names if len({json.dumps(flags.get(name)) for flags in recorded.values()}) > 1]

    def shown(experiment: str, flag: str) -> bool:
        return read[experiment] is None or flag not in of_some_methods or flag in read[experiment]

    return {name: " ".join(command_line_flag(flag, flags.get(flag)) for flag in differ
                           if flags.get(flag) not in (None, False) and shown(name, flag))
            for name, flags in recorded.items()}


def command_line_flag(name: str, value) -> str:
    """``--name value`` as typed (``--name`` alone for a switch that is on)."""
    return f"--{name}" if value is True else f"--{name} {format_values(value)}"


def format_stat(stat: Stat, digits: int = 2) -> str:
    mean, std = stat
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def unique_names(experiments: Sequence[Experiment]) -> None:
    """Experiments of the same folder name (from different parents) get ``_2``, ``_3``, ... for their figures."""
    seen: Dict[str, int] = {}
    for experiment in experiments:
        seen[experiment.name] = seen.get(experiment.name, 0) + 1
        if seen[experiment.name] > 1:
            experiment.name = f"{experiment.name}_{seen[experiment.name]}"


def over_tasks(experiment: Experiment) -> Optional[figures.Curve]:
    """The experiment's average accuracy on the tasks learnt so far and its model size after each task, means over
    the repeats of the k-th row of each one's accuracy matrix (the repeats learn the tasks in their own orders); the
    tasks learnt after each row: k after the k-th, all of them after joint training. None without accuracy matrices
    and sizes per task (the published format)."""
    runs = [run for run in experiment.runs if "acc_matrix" in run and "model_size_after_task" in run]
    if not runs:
        return None
    rows = [list(run["acc_matrix"]) for run in runs]
    tasks = len(runs[0]["acc"])
    learnt = [tasks if row == ALL_TASKS else number for number, row in enumerate(rows[0], start=1)]
    accuracy = [statistics.fmean(statistics.fmean(run["acc_matrix"][names[k]].values())
                                 for run, names in zip(runs, rows)) for k in range(len(learnt))]
    size = [statistics.fmean(run["model_size_after_task"][names[k]] for run, names in zip(runs, rows))
            for k in range(len(learnt))]
    return figures.Curve(experiment.name, learnt, accuracy, size)


def experiment_figures(experiment: Experiment, label: str, out: str) -> List[str]:
    """Draw the experiment's own figures into ``out``, titled by its ``label``; returns their file names (what is
    missing goes to notes)."""
    drawn = []
    first = experiment.runs[0] if experiment.runs else {}
    if "acc_matrix" in first:
        name = f"accuracy_matrix_{experiment.name}.png"
        figures.accuracy_heatmap(first["acc_matrix"], f"{label}: accuracy %, repeat 0", os.path.join(out, name))
        drawn.append(name)
    else:
        experiment.notes.append("no acc_matrix (published format): no accuracy-matrix heatmap; BWT and forgetting "
                                "n/a")
    if first.get("channels"):
        name = f"components_{experiment.name}.png"
        figures.components_per_layer(first["channels"], f"{label}: components kept, repeat 0",
                                     os.path.join(out, name))
        drawn.append(name)
    if "model_size_after_task" in first:
        name = f"model_size_{experiment.name}.png"
        figures.size_growth(first["model_size_after_task"], first["dense_models_size_after_task"],
                            f"{label}: model size, repeat 0", os.path.join(out, name))
        drawn.append(name)
    else:
        experiment.notes.append("no model_size_after_task (published format): no model-size growth figure")
    return drawn


def format_interval(interval: Optional[float]) -> str:
    return "n/a" if interval is None else f"± {interval:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    return ["| " + " | ".join(cells) + " |" for cells in (header, ["---"] * len(header), *rows)]


@dataclass
class WithoutLabel:
    """An experiment's accuracies with and without the task label over its repeats: its ``label`` (``labels``), its
    accuracy with the label (mean and std, 95% half-width), and per rule its ``avg_acc`` and ``task_id_acc``
    (each mean and std, 95% half-width)."""

    label: str
    task_aware: Tuple[Stat, Optional[float]]
    rules: Dict[str, Dict[str, Tuple[Stat, Optional[float]]]]

    def bars(self) -> figures.Measures:
        """Its bars on ``task_agnostic.png``: the accuracy with the label, and under ``TABLE_RULE`` the accuracy
        without it and the task identity, each its mean and 95% half-width."""
        table = self.rules[TABLE_RULE]
        return figures.Measures(self.label, {
            name: (stat[0], interval) for name, (stat, interval) in (
                ("task-aware", self.task_aware), (f"task-agnostic ({TABLE_RULE})", table["avg_acc"]),
                (f"task identity ({TABLE_RULE})", table["task_id_acc"]))})


def without_label(experiment: Experiment, label: str, accuracy: Stat, interval: Optional[float]) -> WithoutLabel:
    """The accuracies without the task label of an experiment whose runs all hold them (``--task_agnostic``)."""
    rules = {}
    for rule in experiment.runs[0]["task_agnostic"]:
        rules[rule] = {}
        for key in ("avg_acc", "task_id_acc"):
            values = [run["task_agnostic"][rule][key] for run in experiment.runs]
            rules[rule][key] = (mean_and_std(values), interval_95(values))
    return WithoutLabel(label, (accuracy, interval), rules)


def without_label_section(measures: Sequence[WithoutLabel], out: str) -> List[str]:
    """The summary's section on the accuracies without the task label, with its figure (``task_agnostic.png``):
    none when no experiment holds them."""
    if not measures:
        return []
    rows = []
    for measure in measures:
        cells = [measure.label, format_stat(measure.task_aware[0]), format_interval(measure.task_aware[1])]
        for rule in RULES:
            for key in ("avg_acc", "task_id_acc"):
                stat, interval = measure.rules[rule][key]
                cells.append(format_stat(stat))
                if rule == TABLE_RULE:
                    cells.append(format_interval(interval))
        rows.append(cells)
    header = ["method", "task-aware %", "95% interval"]
    for rule in RULES:
        header += [f"task-agnostic ({rule}) %", *(["95% interval"] if rule == TABLE_RULE else []),
                   f"task identity ({rule}) %", *(["95% interval"] if rule == TABLE_RULE else [])]
    figures.with_and_without_label([measure.bars() for measure in measures], os.path.join(out, WITHOUT_LABEL_FIGURE))
    return ["## Without the task label", "",
            "Task-aware: each test sample scored by its own task's network and head (the accuracy above). "
            "Task-agnostic: by the network and head of every task learnt, the predicted class the best over all of "
            "them: `logits`, the argmax of every head's raw logits concatenated (FACIL's default, the printed "
            "table's); `log_softmax`, of each head's log-softmax concatenated (FACIL's `--multi-softmax`); "
            "`entropy`, the head whose softmax has the lowest entropy, then its argmax. Task identity: how often "
            "the rule picks the sample's own task. Averages over the tasks after the last one, mean ± std over the "
            "repeats, and the 95% interval of the mean.", "",
            *markdown_table(header, rows), "",
            f"![with and without the task label]({WITHOUT_LABEL_FIGURE})", ""]


def write_report(folders: Sequence[str], out: str) -> str:
    """Read every results folder (all before writing anything), write the figures and ``summary.md`` into ``out``;
    returns the summary's text."""
    experiments = [read_experiment(folder) for folder in folders]
    unique_names(experiments)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {out}: cannot make the folder ({error.strerror})") from None
    flags, swept, named = differing_flags(experiments), swept_flags(experiments), labels(experiments)
    rows, points, curves, sections, measures = [], [], [], [], []
    for number, experiment in enumerate(experiments):
        style, label = figures.experiment_style(number, len(experiments)), named[experiment.name]
        accuracy = over_repeats(experiment, "avg_acc", "std_acc", lambda run: run["avg_acc"])
        interval = interval_95([run["avg_acc"] for run in experiment.runs])
        size = over_repeats(experiment, "model_size", "std_model_size", lambda run: run["model_size"])
        stats = [accuracy, over_repeats(experiment, "bwt", "std_bwt", from_matrix(bwt, "bwt")),
                 over_repeats(experiment, "forgetting", "std_forgetting", from_matrix(forgetting, "forgetting"))]
        seconds = over_repeats(experiment, "seconds", "std_seconds", lambda run: run.get("seconds"))
        rows.append([experiment.name, method(experiment, swept), flags.get(experiment.name, "") or "—",
                     format_stat(stats[0]), format_interval(interval), *map(format_stat, stats[1:]),
                     format_stat((size[0], None), 3), format_stat((seconds[0], None), 0)])
        if accuracy[0] is not None and size[0] is not None:
            points.append(figures.Point(label, size[0], accuracy[0],
                                        interval if interval is not None else accuracy[1], style))
        curve = over_tasks(experiment)
        if curve is not None:
            curves.append(dataclasses.replace(curve, label=label, style=style))
        if experiment.runs and all("task_agnostic" in run for run in experiment.runs):
            measures.append(without_label(experiment, label, accuracy, interval))
        drawn = experiment_figures(experiment, label, out)
        sections.append(f"### {experiment.name}\n\n" + "\n".join(f"![{name}]({name})" for name in drawn)
                        + "".join(f"\n\n*Note: {note}.*" for note in experiment.notes))
    figures.accuracy_against_size(points, os.path.join(out, "accuracy_vs_size.png"))
    overview = ["![accuracy against model size](accuracy_vs_size.png)", ""]
    if curves:
        figures.over_tasks(curves, os.path.join(out, "over_tasks.png"))
        overview += ["![accuracy and size against the tasks learnt](over_tasks.png)", ""]
    header = ["experiment", "method", "flags that differ", "accuracy %", "95% interval", "BWT", "forgetting",
              "size MB", "time s"]
    summary = "\n".join([
        "# Results summary", "",
        "Accuracy: average over the tasks after the last one, mean ± std over the repeats, and the half-width of the "
        "95% confidence interval of the mean (Student's t over the repeats; n/a for one repeat). BWT: final accuracy "
        "minus the accuracy right after learning each earlier task; forgetting: best earlier accuracy minus the final "
        "one (percentage points, mean ± std). Time: seconds of training per repeat.", "",
        *markdown_table(header, rows), "",
        *overview,
        *without_label_section(measures, out),
        "## Each experiment", "", "\n\n".join(sections), ""])
    atomic_write_bytes(summary.encode(), os.path.join(out, SUMMARY))
    return summary


def main(argv=None) -> int:
    """Write the report and print its table (exit 0); a user error is one line (exit 2)."""
    def run() -> None:
        parser = ArgumentParser(prog="python -m evaluation.report", description=__doc__.splitlines()[0])
        parser.add_argument("results", nargs="+", help="results/<experiment> folders")
        parser.add_argument("--out", default="report", help="folder for the figures and summary.md (default: report)")
        args = parser.parse_args(argv)
        summary = write_report(args.results, args.out)
        print("\n".join(line for line in summary.splitlines() if line.startswith("|")))
        print(f"report: {os.path.join(args.out, SUMMARY)} and its figures")

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
