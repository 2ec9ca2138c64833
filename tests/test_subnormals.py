"""Subnormal floats on the CPU: where training makes them (the cross-entropy's gradient of a confident network,
carried back through every layer), and that a run flushes them to 0 in every thread (``subnormals_flushed``)."""
import collections
import contextlib
import math

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import experiment.config
from agents.default import NormalNN
from helpers import QUICK, run_driver
from utils.runtime import in_every_cpu_thread, subnormals_flushed, torch_threads

CPU = torch.device("cpu")
FLUSH_SUPPORTED = torch.set_flush_denormal(False)
"""Whether this CPU has the setting (x86 does; elsewhere ``subnormals_flushed`` changes nothing, as it must)."""


def subnormals(tensor: torch.Tensor) -> int:
    """How many float32 values of ``tensor`` are subnormal, read from their bits (exponent 0, mantissa not 0), so
    that the count holds whatever the CPU's settings make of the values."""
    bits = tensor.detach().contiguous().view(torch.int32)
    return int((((bits >> 23) & 0xFF) == 0).logical_and((bits & 0x7FFFFF) != 0).sum())


def parallel_subnormal_results() -> int:
    """Subnormal results of an elementwise product, a matrix product and a convolution, each large enough for
    torch to split it over its threads."""
    product = torch.full((4_000_000,), 1e-20) * 1e-20
    matmul = torch.full((512, 256), 1e-21) @ torch.full((256, 512), 1e-20)
    convolution = F.conv2d(torch.full((16, 16, 32, 32), 1e-21), torch.full((32, 16, 3, 3), 1e-20))
    return sum(subnormals(result) for result in (product, matmul, convolution))


def test_every_thread_flushes_subnormal_results_inside_the_block_and_none_after_it():
    """With torch's thread pool already started (its threads do not inherit a later setting of the calling
    thread), the products of 10⁻²⁰ by 10⁻²⁰ or 10⁻²¹ (subnormal: below 1.18·10⁻³⁸) are 0 inside the block on every
    thread, and subnormal again after it."""
    with torch_threads(2):
        before = parallel_subnormal_results()
        assert before > 0
        with subnormals_flushed(CPU):
            with subnormals_flushed(CPU):  # nested: the outer block keeps the setting
                pass
            inside = parallel_subnormal_results()
        assert parallel_subnormal_results() == before
    assert inside == (0 if FLUSH_SUPPORTED else before)


def test_the_setting_reaches_every_thread_of_the_pool():
    with torch_threads(2):
        parallel_subnormal_results()  # the pool's threads exist
        assert in_every_cpu_thread(lambda: None) >= 2


def test_other_devices_are_left_alone():
    with subnormals_flushed(torch.device("meta")):
        assert parallel_subnormal_results() > 0


def test_a_confident_networks_cross_entropy_gradient_is_subnormal_unless_flushed():
    """The source: for logits ``z`` the gradient of the batch-mean cross-entropy is ``(softmax(z) − one-hot) / B``,
    and ``softmax(z)_j = exp(z_j − z_max) / Σ`` is subnormal for a logit 87 to 104 below the largest."""
    batch, gap = 64, 95.0
    logits = torch.zeros(batch, 2)
    logits[:, 1] = -gap
    logits.requires_grad_(True)
    targets = torch.zeros(batch, dtype=torch.int64)
    expected = math.exp(-gap) / (1 + math.exp(-gap)) / batch  # in float64: 8.6e-44, subnormal in float32
    assert 0 < expected < torch.finfo(torch.float32).tiny
    F.cross_entropy(logits, targets).backward()
    assert subnormals(logits.grad) == batch
    assert float(logits.grad[0, 1]) == float(torch.tensor(expected))
    logits.grad = None
    with subnormals_flushed(CPU):
        F.cross_entropy(logits, targets).backward()
    assert subnormals(logits.grad) == (0 if FLUSH_SUPPORTED else batch)


class SubnormalResults(TorchDispatchMode):
    """Counts the subnormal float32 values in every result of every operator, by operator."""

    def __init__(self):
        super().__init__()
        self.by_operator = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func.overloadpacket is not torch.ops.aten.empty_like and "bernoulli" not in str(func):  # not yet set
            found = sum(subnormals(t) for t in tree_flatten(result)[0]
                        if isinstance(t, torch.Tensor) and t.dtype == torch.float32)
            if found:
                self.by_operator[str(func)] += found
        return result


def subnormals_in_training_steps(monkeypatch, capsys, cifar10_root) -> collections.Counter:
    """A CPU run of CACL through the driver (five tasks of two classes, two threads) whose heads' logits are shifted
    so that each sample's second class lies 88 below its first (a network confident of the first class): the
    subnormal results of its training steps' operators."""
    counter = SubnormalResults()
    observe, head_logits = NormalNN.observe, NormalNN.head_logits

    def counted_observe(self, *args):
        with counter:
            return observe(self, *args)

    def confident_logits(self, features, task):
        logits = head_logits(self, features, task)
        shift = torch.zeros(logits.shape[1])
        shift[1] = -88.0
        return logits + shift

    monkeypatch.setattr(NormalNN, "observe", counted_observe)
    monkeypatch.setattr(NormalNN, "head_logits", confident_logits)
    with torch_threads(2):
        status, _, _ = run_driver(capsys, *QUICK, "--dataset", "CIFAR10", "--dataroot", cifar10_root,
                                  "--first_split_size", "2", "--other_split_size", "2", "--batch_size", "20",
                                  "--repeat", "1", "--overwrite")
    assert status == 0
    return counter.by_operator


def test_a_cpu_training_run_leaves_no_subnormal_value_in_its_steps(workdir, monkeypatch, capsys, cifar10_root):
    """Without the flush the same run's steps make subnormal values (the cross-entropy's gradient of the samples of
    the first class, then the backward pass of every layer down to the first convolution); with it, none."""
    with monkeypatch.context() as unflushed:
        unflushed.setattr(experiment.config, "subnormals_flushed", lambda device: contextlib.nullcontext())
        found = subnormals_in_training_steps(unflushed, capsys, cifar10_root)
    assert found["aten._log_softmax_backward_data.default"] > 0
    assert found["aten.convolution_backward.default"] > 0
    flushed = subnormals_in_training_steps(monkeypatch, capsys, cifar10_root)
    assert flushed == ({} if FLUSH_SUPPORTED else found)
