"""What a ``--debug`` search leaves behind: its points as JSON, the accuracy-against-components figure and a table."""
import os
from typing import Mapping, Sequence

from utils.files import atomic_json_dump

Point = Mapping[str, float]
"""``{"value": the parameter tried, "components": kept over all SVD layers, "accuracy": % of the first task}``."""


def plot_search(points: Sequence[Point], parameter: str, path: str) -> None:
    """Accuracy against components kept, each point labelled with its parameter value, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([p["components"] for p in points], [p["accuracy"] for p in points], "o-")
    for point in points:
        axes.annotate(f"{point['value']:.2g}", (point["components"], point["accuracy"]), fontsize=7,
                      textcoords="offset points", xytext=(3, 3))
    axes.set_xlabel("components kept (all SVD layers)")
    axes.set_ylabel("accuracy of the first task (%)")
    axes.set_title(f"accuracy against components over {parameter}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_search(points: Sequence[Point], name: str, parameter: str, directory: str) -> str:
    """``directory/<name>.json`` and ``directory/<name>.png``; returns the table to print."""
    atomic_json_dump([dict(point) for point in points], os.path.join(directory, f"{name}.json"))
    figure = os.path.join(directory, f"{name}.png")
    plot_search(points, parameter, figure)
    rows = [f"{parameter:>12}  components  accuracy %"]
    rows += [f"{p['value']:12.4g}  {p['components']:10d}  {p['accuracy']:10.2f}" for p in points]
    return "\n".join(rows + [f"figure: {figure}"])
