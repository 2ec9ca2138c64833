"""What a ``--debug`` search leaves behind: its points as JSON, the accuracy-against-components figure and a table."""
import os
from typing import Mapping, Sequence

from evaluation import figures
from utils.files import atomic_json_dump

SEARCH_DPI = 120

Point = Mapping[str, float]
"""``{"value": the parameter tried, "components": kept over all SVD layers, "accuracy": % of the first task,
"macs": multiply-adds of the first task's network on one input}``."""


def plot_search(points: Sequence[Point], parameter: str, path: str) -> None:
    """Accuracy against components kept and against multiply-adds (millions), each point labelled with its
    parameter value, side by side in a PNG."""
    figure, panels = figures.pyplot().subplots(1, 2, figsize=(11, 4), sharey=True)
    for axes, key, scale, label in ((panels[0], "components", 1, "components kept (all SVD layers)"),
                                    (panels[1], "macs", 1e6, "multiply-adds of the first task (millions)")):
        axes.plot([p[key] / scale for p in points], [p["accuracy"] for p in points], "o-")
        for point in points:
            axes.annotate(f"{point['value']:.2g}", (point[key] / scale, point["accuracy"]), fontsize=7,
                          textcoords="offset points", xytext=(3, 3))
        axes.set_xlabel(label)
    panels[0].set_ylabel("accuracy of the first task (%)")
    figure.suptitle(f"accuracy against components and multiply-adds over {parameter}")
    figures.save(figure, path, dpi=SEARCH_DPI)


def write_search(points: Sequence[Point], name: str, parameter: str, directory: str) -> str:
    """``directory/<name>.json`` and ``directory/<name>.png``; returns the table to print."""
    atomic_json_dump([dict(point) for point in points], os.path.join(directory, f"{name}.json"))
    figure = os.path.join(directory, f"{name}.png")
    plot_search(points, parameter, figure)
    rows = [f"{parameter:>12}  components  accuracy %  MMACs"]
    rows += [f"{p['value']:12.4g}  {p['components']:10d}  {p['accuracy']:10.2f}  {p['macs'] / 1e6:5.2f}"
             for p in points]
    return "\n".join(rows + [f"figure: {figure}"])
