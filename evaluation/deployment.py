"""What ``deployment.export`` leaves behind besides the model files: ``summary.json`` and the table it prints."""
import os
from typing import List, Mapping, Optional

from utils.files import atomic_json_dump

SUMMARY_FILE = "summary.json"
LATENCY_BATCHES = (1, 64)
"""Batch sizes of the latency measurements; a timed run at batch b is ``64 // b`` calls in a row (the same number
of images at every batch size), divided by their number."""


def write_deployment_summary(summary: Mapping, directory: str) -> None:
    atomic_json_dump(summary, os.path.join(directory, SUMMARY_FILE))


def ratio(value: Optional[float], dense: Optional[float]) -> str:
    return f"({value / dense:.2f})" if value is not None and dense else ""


def latency_cells(row: Mapping, dense: Mapping, engine: str) -> List[str]:
    """``b1 ms`` and ``b64 ms (× dense)`` of one engine, blank where nothing was measured."""
    cells = []
    for batch in map(str, LATENCY_BATCHES):
        milliseconds = row["latency_ms"].get(engine, {}).get(batch)
        if milliseconds is None:
            cells.append(f"{'-':>15}")
            continue
        relative = ratio(milliseconds, dense["latency_ms"].get(engine, {}).get(batch))
        cells.append(f"{milliseconds:8.2f} {relative:>6}")
    return cells


def format_deployment_table(summary: Mapping) -> str:
    """One row per task and one for the dense network: components per layer, parameters, file sizes (KB),
    multiply-adds (millions) and median latency (ms) at batch 1 and 64 in PyTorch and ONNX Runtime, each with its
    ratio to the dense network's in parentheses."""
    dense = summary["dense"]
    formats = "/".join(summary["tasks"][0]["files"]) if summary["tasks"] else ""
    header = (f"{'task':>6}  {'components per layer':<24} {'params':>9} {f'KB {formats}':>14} {'MMACs':>15}  "
              f"{'PyTorch b1 ms':>15} {'b64 ms':>15}  {'ORT b1 ms':>15} {'b64 ms':>15}")
    lines = [f"{summary['checkpoint']} ({summary['model_name']}, {summary['dataset']}): latency per call on the CPU "
             f"with {summary['threads']} thread(s), median of {summary['repeats']} timed runs of 64 images; "
             f"(ratio to the dense {dense['model_name']})", header]
    rows = [(row["task"], " ".join(map(str, row["components"])), row) for row in summary["tasks"]]
    rows.append(("dense", dense["model_name"], dense))
    for name, components, row in rows:
        sizes = "/".join(f"{file['bytes'] / 1000:.0f}" for file in row.get("files", {}).values()) or "-"
        macs = f"{row['macs'] / 1e6:7.2f} {ratio(row['macs'], dense['macs']):>6}"
        lines.append(f"{name:>6}  {components:<24} {row['parameters']:>9} {sizes:>14} {macs:>15}  "
                     + " ".join(latency_cells(row, dense, "pytorch")) + "  "
                     + " ".join(latency_cells(row, dense, "onnxruntime")))
    return "\n".join(lines)
