"""Inference latency on the CPU, in PyTorch and in ONNX Runtime: the median of repeated timed calls after warm-up,
the models measured in alternating rounds so that a change in the machine's load falls on all of them alike."""
import statistics
import time
from typing import Callable, Dict

import numpy as np
import onnxruntime
import torch

Runner = Callable[[], object]
"""One inference call on a fixed batch."""


def median_latencies_ms(runners: Dict[str, Runner], warmup: int, repeats: int, calls: int = 1) -> Dict[str, float]:
    """``{name: median milliseconds of one call}``: ``warmup`` untimed calls of each runner, then ``repeats`` rounds
    in which every runner is timed (``perf_counter``) over ``calls`` calls in a row, divided by ``calls``."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            for _ in range(calls):
                run()
            times[name].append((time.perf_counter() - start) / calls)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def torch_runner(network: torch.nn.Module, inputs: torch.Tensor) -> Runner:
    def run():
        with torch.inference_mode():
            return network(inputs)

    return run


def onnxruntime_session(model: bytes, threads: int) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session on the CPU with ``threads`` threads and every graph optimisation."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def onnxruntime_runner(session: onnxruntime.InferenceSession, inputs: np.ndarray) -> Runner:
    feed = {session.get_inputs()[0].name: inputs}
    return lambda: session.run(None, feed)
