"""The report's figures, each drawn from plain numbers into a PNG with matplotlib (no display needed)."""
import io
import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Tuple

from evaluation.metrics import AccuracyMatrix
from utils.files import atomic_write_bytes

DPI = 110


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: str, dpi: int = DPI) -> None:
    """The figure as a PNG at ``path`` (written atomically), then closed."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    pyplot().close(figure)
    atomic_write_bytes(buffer.getvalue(), path)


def accuracy_heatmap(acc_matrix: AccuracyMatrix, title: str, path: str) -> None:
    """Accuracy (%) of each task evaluated (columns, in the order first evaluated) after each task trained (rows, in
    training order); cells never measured are blank."""
    plt = pyplot()
    rows = list(acc_matrix)
    columns = list(dict.fromkeys(task for row in rows for task in acc_matrix[row]))
    values = [[acc_matrix[row].get(task, math.nan) for task in columns] for row in rows]
    side = max(3.5, 0.45 * len(columns) + 2)
    figure, axes = plt.subplots(figsize=(side + 1, max(3.0, 0.45 * len(rows) + 1.5)))
    image = axes.imshow(values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    axes.set_xticks(range(len(columns)), columns)
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlabel("task evaluated")
    axes.set_ylabel("after training task")
    if len(columns) <= 10:
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    axes.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                              color="white" if value < 60 else "black")
    figure.colorbar(image, ax=axes, label="accuracy %")
    axes.set_title(title, fontsize=9)
    save(figure, path)


def components_per_layer(channels: Mapping[str, Sequence[float]], title: str, path: str) -> None:
    """Components kept in each SVD layer after each task (cumulative over the tasks, in training order), from the
    components each task added (``channels``: {task position or name: [per layer]})."""
    plt = pyplot()
    added = list(channels.values())
    figure, axes = plt.subplots(figsize=(6, 3.8))
    tasks = range(1, len(added) + 1)
    for layer in range(len(added[0])):
        kept, total = [], 0.0
        for per_task in added:
            total += per_task[layer]
            kept.append(total)
        axes.plot(tasks, kept, "o-", markersize=3, label=f"SVD layer {layer + 1}")
    axes.set_xticks(list(tasks))
    axes.set_xlabel("tasks learnt")
    axes.set_ylabel("components kept")
    axes.legend(fontsize=7)
    axes.set_title(title, fontsize=9)
    save(figure, path)


def size_growth(model_sizes: Mapping[str, float], dense_sizes: Mapping[str, float], title: str, path: str) -> None:
    """Model size (MB) after each task against one dense model per task learnt so far."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.8))
    tasks = range(1, len(model_sizes) + 1)
    axes.plot(tasks, list(model_sizes.values()), "o-", label="this model")
    axes.plot(tasks, list(dense_sizes.values()), "s--", label="one dense model per task")
    axes.set_xticks(list(tasks), list(model_sizes))
    axes.set_xlabel("after training task")
    axes.set_ylabel("size (MB)")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=9)
    save(figure, path)


@dataclass
class Point:
    """One experiment on the accuracy-against-size figure."""

    label: str
    size: float
    accuracy: float
    std: Optional[float]
    style: Optional[dict] = None
    """Its color and marker (``experiment_style``); by default its place among the points."""


def size_groups(sizes: Sequence[float], width: float) -> list:
    """Indices of the points drawn side by side: runs of points, in order of size, each within `width` of the
    previous one."""
    groups = []
    for i in sorted(range(len(sizes)), key=lambda i: sizes[i]):
        if groups and sizes[i] - sizes[groups[-1][-1]] <= width:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


DODGE_POINTS = 5.0
"""How far apart (typographic points) the markers of points of about the same size are drawn."""


def dodge(sizes: Sequence[float], accuracies: Sequence[float], width: float) -> list:
    """Horizontal offsets (points) of each point: within each of ``size_groups(sizes, width)`` of ``n`` points, the
    ``i``-th by accuracy (lowest first) at ``(i − (n − 1) / 2) · DODGE_POINTS``, so that their markers and error bars
    stand side by side around their size; a point alone stays at 0."""
    offsets = [0.0] * len(sizes)
    for group in size_groups(sizes, width):
        for rank, i in enumerate(sorted(group, key=lambda i: accuracies[i])):
            offsets[i] = (rank - (len(group) - 1) / 2) * DODGE_POINTS
    return offsets


MARKERS = "osD^vP*Xph"
"""The markers experiments take in turn (with ``experiment_style``'s colors)."""


def experiment_style(index: int, count: int) -> dict:
    """Color and marker of the ``index``-th of ``count`` experiments: matplotlib's 10 colors (``tab10``) up to 10
    experiments; beyond, its 20 (``tab20``) taken as its 10 dark hues, then their 10 light ones; the markers of
    ``MARKERS`` in turn after each round of colors, so that no two of up to 200 experiments look alike."""
    plt = pyplot()
    if count <= 10:
        palette, color = plt.get_cmap("tab10"), index % 10
    else:
        palette, position = plt.get_cmap("tab20"), index % 20
        color = 2 * position if position < 10 else 2 * (position - 10) + 1
    return {"color": palette(color), "marker": MARKERS[(index // palette.N) % len(MARKERS)]}


def clipped_interval(accuracy: float, half_width: float) -> list:
    """``[[below], [above]]`` of an error bar ``accuracy ± half_width`` cut to the accuracies that can be, 0-100%."""
    return [[min(half_width, accuracy)], [min(half_width, 100.0 - accuracy)]]


def accuracy_against_size(points: Sequence[Point], path: str) -> None:
    """Average accuracy against model size, one point per experiment (``experiment_style``), its error bar the 95%
    interval of the mean (``Point.std`` where there is none) cut to 0-100% (``clipped_interval``); points of about
    the same size (within 2% of the largest) side by side (``dodge``), so that many methods of one size stay
    readable; each experiment named in the legend, in the report's order."""
    plt = pyplot()
    from matplotlib.transforms import offset_copy

    figure, axes = plt.subplots(figsize=(9, 4.8))
    largest = max((point.size for point in points), default=1.0)
    offsets = dodge([point.size for point in points], [point.accuracy for point in points], 0.02 * largest)
    low, high = 100.0, 0.0
    for index, (point, offset) in enumerate(zip(points, offsets)):
        style = point.style or experiment_style(index, len(points))
        (below,), (above,) = bar = clipped_interval(point.accuracy, point.std or 0.0)
        low, high = min(low, point.accuracy - below), max(high, point.accuracy + above)
        axes.errorbar(point.size, point.accuracy, yerr=bar, fmt=style["marker"], color=style["color"], capsize=2,
                      label=point.label, transform=offset_copy(axes.transData, fig=figure, x=offset, units="points"))
    margin = max(0.05 * (high - low), 0.5)  # the axes do not scale to points drawn with an offset: set here
    axes.set_ylim(low - margin, high + margin)
    axes.set_xlim(-0.05 * largest, 1.1 * largest)
    axes.set_xlabel("model size (MB)")
    axes.set_ylabel("average accuracy %")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.set_title("accuracy against model size\n(error bars: 95% interval of the mean over the repeats, within "
                   "0-100%; points of about one size side by side)", fontsize=9)
    save(figure, path)


@dataclass
class Measures:
    """One experiment on the figure of accuracy with and without the task label: for each measure (in the order
    drawn), its mean % over the repeats and the half-width of its error bar (None: no bar)."""

    label: str
    values: Mapping[str, Tuple[float, Optional[float]]]


def with_and_without_label(rows: Sequence[Measures], path: str) -> None:
    """Horizontal bars, a group per experiment (top to bottom in the report's order), a bar per measure (task-aware
    accuracy, task-agnostic accuracy, task identity), each its mean over the repeats with the 95% interval of the
    mean cut to 0-100% (``clipped_interval``)."""
    plt = pyplot()
    names = list(rows[0].values)
    height = 0.8 / len(names)
    figure, axes = plt.subplots(figsize=(8, 1.5 + 0.15 * len(rows) * len(names)))
    for k, name in enumerate(names):
        positions = [index + (k - (len(names) - 1) / 2) * height for index in range(len(rows))]
        means = [row.values[name][0] for row in rows]
        bars = [clipped_interval(mean, row.values[name][1] or 0.0) for mean, row in zip(means, rows)]
        axes.barh(positions, means, height=height, color=f"C{k}", label=name, capsize=2,
                  xerr=[[bar[0][0] for bar in bars], [bar[1][0] for bar in bars]])
    axes.set_yticks(range(len(rows)), [row.label for row in rows], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("% (error bars: 95% interval of the mean over the repeats)")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.set_title("with and without the task label: accuracy, and how often the task is identified", fontsize=9)
    save(figure, path)


@dataclass
class Curve:
    """One experiment on the figure against the tasks learnt: after each row of its accuracy matrix, the number of
    tasks learnt, the average accuracy on them (%) and the model size (MB)."""

    label: str
    tasks_learnt: Sequence[int]
    accuracy: Sequence[float]
    size: Sequence[float]
    style: Optional[dict] = None
    """Its color and marker (``experiment_style``); by default its place among the curves."""


def over_tasks(curves: Sequence[Curve], path: str) -> None:
    """Average accuracy on the tasks learnt so far (left) and model size (right) against the number of tasks
    learnt, one line per experiment (``experiment_style``)."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, curve in enumerate(curves):
        style = curve.style or experiment_style(index, len(curves))
        line = "-" if len(curve.tasks_learnt) > 1 else ""
        for axes, values in ((left, curve.accuracy), (right, curve.size)):
            axes.plot(curve.tasks_learnt, values, linestyle=line, markersize=4, label=curve.label, **style)
    for axes, label in ((left, "average accuracy on the tasks learnt (%)"), (right, "model size (MB)")):
        axes.set_xlabel("tasks learnt")
        axes.set_ylabel(label)
        axes.xaxis.get_major_locator().set_params(integer=True)
    right.set_ylim(bottom=0)
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.suptitle("accuracy and size as the tasks are learnt (means over the repeats)", fontsize=9)
    save(figure, path)
