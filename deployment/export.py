"""``python -m deployment.export CHECKPOINT_DIR --out DIR``: each task of a saved CACL model as its own smallest
runnable network, with its multiply-adds and CPU latency against the dense network's.

For every task (``--tasks``, default all, in training order) and format (``--format``): ``DIR/task<name>.onnx``
and ``DIR/task<name>.pt`` (TorchScript). Each takes a float32 batch (N, C, H, W), any N, normalised as the
dataset's loader normalises it, and returns that task's logits; it holds only ``torch.nn`` layers
(``models.deployable.task_network``: each SVD layer as one dense or two thin convolutions, in the form the CPU
runs faster, chosen by their multiply-adds; BatchNorm folded in). The files are made for the CPU's runtimes, whose
latency this command measures: the networks are built on the CPU, so the CPU's layer-form rule applies (a GPU
runtime runs one composed kernel per layer faster, ``models.deployable.TWO_CONVOLUTIONS_AT_MOST``).
``DIR/summary.json`` and the printed table give per task the components per layer, parameters, file sizes,
multiply-adds (``torch.utils.flop_counter``) and the median latency at batch 1 and 64 on the CPU with ``--threads``
threads in PyTorch and in ONNX Runtime; and the same for the dense network of the same layers with one head.
"""
import argparse
import io
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional

import onnx
import onnxruntime
import torch
from torch import nn

from dataloaders import NetworkInput, input_size, network_input
from deployment.latency import median_latencies_ms, onnxruntime_runner, onnxruntime_session, torch_runner
from evaluation.deployment import LATENCY_BATCHES, format_deployment_table, write_deployment_summary
from experiment.config import read_config
from experiment.saved_model import find_checkpoint, saved_agent
from models import DENSE_FORMS, build_model
from models.deployable import count_multiply_adds, task_network, two_convolution_layers
from utils.errors import ArgumentParser, UserError, run_command
from utils.files import atomic_write_bytes
from utils.runtime import torch_threads

log = logging.getLogger(__name__)

FORMATS = {"onnx": "onnx", "torchscript": "pt"}
CONFIG_FLAGS = ("model_type", "model_name", "agent_type", "agent_name", "dataset")
"""The flags of this command that are the driver's, read through the driver's door (``experiment.config``)."""
"""Each ``--format`` and the extension of its files."""
ENGINES = ("pytorch", "onnxruntime")


def get_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m deployment.export", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("checkpoint", help="a checkpoint directory (ours or the published layout), or a name under saves/ or "
                           "pretrained/")
    add("--out", required=True, help="the directory the files go to")
    add("--format", nargs="+", choices=list(FORMATS), default=list(FORMATS), help="formats to write (default: both)")
    add("--tasks", nargs="+", default=None, help="tasks to export (default: every trained task, in training order)")
    add("--model_type", default="customnet_SVD", help="as in iBatchLearn.py")
    add("--model_name", default="Net_SVD", help="as in iBatchLearn.py")
    add("--agent_type", default="SVDNet", help="as in iBatchLearn.py: the method that saved the checkpoint")
    add("--agent_name", default="SVDNet", help="as in iBatchLearn.py")
    add("--dataset", default="CIFAR10", help="as in iBatchLearn.py: fixes the input size and normalisation")
    add("--threads", type=int, default=1, help="CPU threads of the latency measurements (default 1)")
    add("--warmup", type=int, default=3, help="untimed calls of each model before the timed ones")
    add("--repeats", type=int, default=20,
        help="timed runs of 64 images of each model at each batch size, the median is kept; 0: no latency")
    return parser.parse_args(argv)


def check_args(args) -> None:
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    for flag in ("warmup", "repeats"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag} must be 0 or more, got {getattr(args, flag)}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out} is a file, not a directory")
    if args.model_name not in DENSE_FORMS:
        raise UserError(f"--model_name {args.model_name} is not a CACL model: export takes "
                        f"{', '.join(DENSE_FORMS)}")


@dataclass
class Deployed:
    """One exported network: the task's, or the dense baseline's."""

    network: nn.Module
    """Channels-last on the CPU, as ``NormalNN`` runs it and as the TorchScript file holds it."""
    input: NetworkInput
    onnx: Optional[bytes] = None


# --- building -----------------------------------------------------------------------------------------------
def chosen_tasks(wanted: Optional[List[str]], trained: List[str], directory) -> List[str]:
    """``--tasks`` (checked against the trained ones), or every trained task in training order."""
    if not trained:
        raise UserError(f"{directory} holds no trained task")
    if wanted is None:
        return list(trained)
    unknown = [task for task in wanted if task not in trained]
    if unknown:
        raise UserError(f"{directory} has no task {unknown[0]}: its tasks are {', '.join(trained)}")
    return list(dict.fromkeys(wanted))


def dense_network(args, inputs: NetworkInput, n_classes: int) -> nn.Module:
    """The dense network of ``args.model_name``'s layers with one head of ``n_classes`` (random weights)."""
    model_type, model_name = DENSE_FORMS[args.model_name]
    model = build_model(model_type, model_name, image_size=inputs.size)
    model.add_heads({"1": n_classes})
    return task_network(model.feature_layers(), None, model.last["1"]).to(memory_format=torch.channels_last)


def onnx_bytes(item: Deployed) -> bytes:
    """The network as an ONNX model (``torch.onnx``'s exporter) with a dynamic batch size, checked by
    ``onnx.checker``: input ``images`` (batch, C, H, W), output ``logits``."""
    example = torch.zeros(2, *item.input.shape)  # a batch of 1 would be specialised
    program = torch.onnx.export(item.network, (example,), dynamo=True, verbose=False, external_data=False,
                                input_names=["images"], output_names=["logits"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},))
    onnx.checker.check_model(program.model_proto, full_check=True)
    return program.model_proto.SerializeToString()


def torchscript_bytes(item: Deployed) -> bytes:
    """The network scripted and saved by ``torch.jit`` (whose deprecation warnings are silenced here)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit", category=FutureWarning)
        torch.jit.save(torch.jit.script(item.network), buffer)
    return buffer.getvalue()


def write_files(deployed: Dict[str, Deployed], formats: List[str], out: str) -> Dict[str, Dict[str, dict]]:
    """``out/task<name>.<extension>`` for every task and format (each written atomically); keeps each ONNX model
    in its ``Deployed``. Returns ``{task: {format: {"file": name, "bytes": size}}}``."""
    files = {}
    for task, item in deployed.items():
        contents = {}
        if "onnx" in formats:
            item.onnx = contents["onnx"] = onnx_bytes(item)
        if "torchscript" in formats:
            contents["torchscript"] = torchscript_bytes(item)
        files[task] = {}
        for form, content in contents.items():
            file_name = f"task{task}.{FORMATS[form]}"
            atomic_write_bytes(content, os.path.join(out, file_name))
            files[task][form] = {"file": file_name, "bytes": len(content)}
        log.info("task %s: %s", task, ", ".join(file["file"] for file in files[task].values()))
    return files


# --- measuring ----------------------------------------------------------------------------------------------
def measured(deployed: Dict[str, Deployed], args) -> Dict[str, Dict[str, Dict[int, float]]]:
    """``{model: {engine: {batch size: median ms}}}`` over every model in alternating rounds (ONNX Runtime only for
    models exported to ONNX); empty dicts with ``--repeats 0``."""
    latencies = {name: {engine: {} for engine in ENGINES} for name in deployed}
    if args.repeats == 0:
        return latencies
    sessions = {name: onnxruntime_session(item.onnx, args.threads) for name, item in deployed.items() if item.onnx}
    generator = torch.Generator().manual_seed(0)
    for batch in LATENCY_BATCHES:
        runners = {}
        for name, item in deployed.items():
            inputs = torch.randn(batch, *item.input.shape, generator=generator)
            runners[name, "pytorch"] = torch_runner(item.network, inputs)
            if name in sessions:
                runners[name, "onnxruntime"] = onnxruntime_runner(sessions[name], inputs.numpy())
        calls = max(1, max(LATENCY_BATCHES) // batch)
        for (name, engine), milliseconds in median_latencies_ms(runners, args.warmup, args.repeats, calls).items():
            latencies[name][engine][batch] = milliseconds
    return latencies


def description(item: Deployed, latency: Dict[str, Dict[int, float]]) -> dict:
    """The numbers ``summary.json`` holds for every network."""
    return {"parameters": sum(p.numel() for p in item.network.parameters()),
            "macs": count_multiply_adds(item.network, item.input.shape),
            "input": {"shape": list(item.input.shape), "mean": list(item.input.mean), "std": list(item.input.std)},
            "latency_ms": {engine: {str(batch): ms for batch, ms in by_batch.items()}
                           for engine, by_batch in latency.items()}}


def task_row(agent, task: str, item: Deployed, files: Dict[str, dict], latency) -> dict:
    """A task's entry of ``summary.json``: its components per SVD layer and which layers are two convolutions
    (``models.deployable.two_convolution_layers``), its files and ``description``."""
    ranks = agent.task_ranks(task)
    layers = agent.model.feature_layers()
    return {"task": task, "components": list(ranks), "two_convolutions": two_convolution_layers(layers, ranks),
            "files": files, **description(item, latency)}


# --- the command ----------------------------------------------------------------------------------------------
def export(args) -> str:
    """Check everything, then write every file and ``summary.json``; returns the table to print."""
    check_args(args)
    config = read_config(["--gpuid", "-1", *(f"--{name}={getattr(args, name)}" for name in CONFIG_FLAGS)])
    directory = find_checkpoint(args.checkpoint, given_as="checkpoint")
    agent = saved_agent(config, torch.device("cpu"), directory, input_size(args.dataset))
    tasks = chosen_tasks(args.tasks, agent.tasks_trained, directory)
    inputs = {task: network_input(args.dataset, task) for task in tasks}
    heads = {name: head[-1].out_features for name, head in agent.model.last.items()}
    with torch_threads(args.threads):
        deployed = {task: Deployed(agent.task_network(task), inputs[task]) for task in tasks}
        files = write_files(deployed, args.format, args.out)
        dense = Deployed(dense_network(args, inputs[tasks[0]], heads[agent.head_of(tasks[0])]), inputs[tasks[0]])
        if args.repeats > 0 and "onnx" in args.format:
            dense.onnx = onnx_bytes(dense)
        latencies = measured({**deployed, "dense": dense}, args)
    summary = {"checkpoint": str(directory), "model_type": args.model_type, "model_name": args.model_name,
               "dataset": args.dataset, "threads": args.threads, "warmup": args.warmup, "repeats": args.repeats,
               "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
               "tasks": [task_row(agent, task, deployed[task], files[task], latencies[task]) for task in tasks],
               "dense": {"model_name": DENSE_FORMS[args.model_name][1], **description(dense, latencies["dense"])}}
    write_deployment_summary(summary, args.out)
    return format_deployment_table(summary)


QUIET_LOGGERS = ("onnxscript", "onnx_ir")
"""The ONNX exporter's libraries, which log every optimisation pass at INFO."""


def main(argv=None) -> int:
    """Export and print the table (exit 0); a user error is one line (exit 2)."""
    def run() -> None:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        print(export(get_args(argv)))

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
