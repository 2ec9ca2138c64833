"""The CUDA path, checked without a GPU: every test runs on ``cuda:0`` simulated on the CPU (``simulated``,
``tests/simulated_cuda.py``: real values, device mixes raise, host-device syncs recorded) and, where a GPU is, on real
CUDA tensors (``cuda``, syncs recorded by ``torch.cuda.set_sync_debug_mode``, cuDNN as under ``--benchmark``;
``scripts/gpu_check.sh`` runs them there).

Covered on the device: the data path (gathering, on-device augmentation and normalisation, mixed-task batches);
every agent's training step (the forward pass, the whole loss, CACL's sparsity and orthogonality terms with the
frozen prefix's constants, backward, the optimizer step, the frozen components' restore, the NaN watch) and its end of
task (pruning, growth, fresh components, the baselines' importance passes and anchors, SI's path integral, the
rehearsal memory); GEM's projection, whose quadratic program runs on the CPU by design (explicit copies, counted);
per-task evaluation through each task's own network (BatchNorm statistics folded in) and its multiply-adds count;
evaluation without the task label (``--task_agnostic``), every task's samples through every task's network;
a state saved on the CPU continued on the device; the driver end to end with ``--gpuid 0`` and ``--loadmodel``;
CACL's zero forgetting, bit for bit; and the training step captured as a CUDA graph (``--cuda_graph``) and replayed,
bit-identical to the same step run eagerly (simulated: ``SimulatedGraphs``; on a GPU by CUDA itself). The syncs each
step makes are asserted: none in a training step but GEM's.

Not covered here, by the GPU check only: anything that depends on CUDA's kernels, numbers and memory (cuDNN's
algorithms, bfloat16 autocast, ``torch.compile``'s generated code, the optimizers' ``foreach`` paths, streams and
asynchronous errors, peak memory, speed). The export (``deployment.export``) runs on the CPU by design; what it builds
on a device is each task's network, checked here.
"""
import dataclasses
import io
import json
from collections import Counter

import pytest
import torch

import agents.default
import agents.regularizers
import experiment.config
import iBatchLearn
import models.vgg_16_bn
from agents import agent_class, agent_types
from agents.exp_replay import project_gradient
from agents.loss_watch import LossWatch
from benchmarks.benchmark import aten_operations_per_step
from benchmarks.syncs import CudaSyncs
from helpers import batches
from dataloaders import DATASET_INPUTS, BatchTransform, TaskData, TaskLoader
from experiment.protocols import Progress, TaskStream
from models import build_model
from models.deployable import count_multiply_adds
from models.vgg_16_bn import VGG16_CFG
from simulated_cuda import DeviceMismatch, SimulatedCuda, SimulatedGraphs
from utils.errors import UserError
from utils.runtime import configure_cudnn

CUDA = torch.device("cuda", 0)
DEVICES = ["simulated"] + (["cuda"] if torch.cuda.is_available() else [])
AGENTS = [(agent_type, name) for agent_type, names in agent_types().items() for name in names]
LOSS_WATCH = "agents/loss_watch.py (check)"
GEM_SITES = {"agents/exp_replay.py (backward)", "agents/exp_replay.py (project_gradient)"}
"""Where GEM reads its constraint (whether to project) and copies to and from its quadratic program on the CPU."""


@pytest.fixture(params=DEVICES)
def cuda(request, monkeypatch):
    """``cuda:0``, simulated or real; ``cuda.syncs`` records the host-device syncs made inside the test."""
    if request.param == "simulated":
        with SimulatedCuda() as simulated:
            yield simulated
    else:
        for name in ("deterministic", "benchmark"):  # restored after the test
            monkeypatch.setattr(torch.backends.cudnn, name, getattr(torch.backends.cudnn, name))
        configure_cudnn(reproducible=True)
        with CudaSyncs() as real:
            yield real


def sites(syncs):
    return [sync.site for sync in syncs]


def images(name, n=16, classes=2, seed=None, augment=True):
    """``n`` CIFAR-100-shaped uint8 images of ``classes`` labels, transformed as CIFAR-100's train split."""
    generator = torch.Generator().manual_seed(int(name) if seed is None else seed)
    data = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    cifar100 = DATASET_INPUTS["CIFAR100"]
    return TaskData(name, data, torch.randint(0, classes, (n,), generator=generator),
                    BatchTransform(cifar100.mean, cifar100.std, augment=augment))


def loader(tasks, shuffle=True, batch_size=8):
    return TaskLoader(tasks, batch_size, shuffle=shuffle, device=CUDA, generator=torch.Generator().manual_seed(0))


def device_agent(agent_type="SVDNet", agent_name="SVDNet", model=None, tasks=("1", "2"), **settings):
    """An agent on ``cuda:0`` with heads for ``tasks``, built from seed 0, on ``model`` (default: ``Net_SVD``, or the
    dense ``Net`` for a method that runs on dense networks only); one epoch a task, no logging."""
    cls = agent_class(agent_type, agent_name)
    if model is None:
        model = ("customnet_SVD", "Net_SVD")
        try:
            cls.check_model(*model)
        except UserError:
            model = ("customnet", "Net")
    torch.manual_seed(0)
    network = build_model(*model)
    network.add_heads({task: 2 for task in tasks})
    own = {name: value for name, value in (("reg_coef", 1.0), ("memory_size", 8))
           if name in {field.name for field in dataclasses.fields(cls.Settings)}}
    return cls(network, cls.Settings(**{"schedule": [1], "print_freq": 10 ** 6, "device": str(CUDA), **own,
                                        **settings}))


def watch_steps(agent, cuda):
    """Record the syncs of every training step (``observe``) of ``agent`` in the returned list, one list a step."""
    steps = []
    observe = agent.observe

    def observed(*batch):
        start = len(cuda.syncs)
        terms = observe(*batch)
        steps.append(cuda.syncs[start:])
        return terms

    agent.observe = observed
    return steps


def tensors_of(state, path="state"):
    """``(path, tensor)`` of every tensor in a nested state."""
    if isinstance(state, torch.Tensor):
        yield path, state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from tensors_of(value, f"{path}.{key}")
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            yield from tensors_of(value, f"{path}[{index}]")


# ---------------------------------------------------------------- the simulation itself


def test_the_simulation_catches_mixes_reads_and_blocking_copies():
    with SimulatedCuda() as simulated:
        x = torch.ones(4, device="cuda")
        assert x.device == CUDA and x.is_cuda and (x * 2).device == CUDA and (x + torch.tensor(1.0)).device == CUDA
        for mix in (lambda: x + torch.ones(4), lambda: x[torch.tensor([0, 1])], lambda: torch.ones(4)[x.long()],
                    lambda: torch.cat([x, torch.ones(1)]),
                    lambda: torch.randint(3, (4,), device="cuda", generator=torch.Generator())):
            with pytest.raises(DeviceMismatch):
                mix()
        with pytest.raises(TypeError):
            x.numpy()
        assert simulated.syncs == []
        float(x.sum()), x.tolist(), x[x > 0], x.cpu()
        torch.ones(4).to(CUDA), torch.ones(4).to(CUDA, non_blocking=True), torch.tensor([1.0], device=CUDA)
    assert [(sync.kind, sync.what) for sync in simulated.syncs] == [
        ("read", "__float__"), ("read", "tolist"), ("read", "__getitem__"), ("to host", "cpu"), ("to device", "to"),
        ("to device", "tensor")]


def test_a_cpu_tensor_in_the_loss_fails_the_step(monkeypatch):
    """What the tests below catch: an identity matrix made without ``device=`` in the orthogonality term."""
    monkeypatch.setattr(agents.regularizers, "orthogonality",
                        lambda factor: ((factor.t() @ factor - torch.eye(factor.shape[1])) ** 2).sum())
    with SimulatedCuda():
        agent = device_agent()
        with pytest.raises(DeviceMismatch, match="agents/regularizers.py"):
            agent.learn_task("1", loader(images("1")))


# ---------------------------------------------------------------- data


def test_batches_are_made_on_the_device_without_a_sync(cuda):
    permuted = dataclasses.replace(images("2", augment=False), transform=BatchTransform(
        [0.5], [0.25], permutation=torch.randperm(3 * 32 * 32, generator=torch.Generator().manual_seed(0))))
    batches_seen = 0
    for inputs, targets, tasks in loader([images("1"), permuted], batch_size=6):
        assert inputs.device == CUDA and targets.device == CUDA and inputs.dtype == torch.float32
        batches_seen += 1
    assert batches_seen == 6 and cuda.syncs == []


# ---------------------------------------------------------------- training and evaluation


@pytest.mark.parametrize("agent_type, agent_name", AGENTS)
def test_every_agent_trains_and_evaluates_on_the_device_without_syncs_in_its_steps(cuda, agent_type, agent_name):
    agent = device_agent(agent_type, agent_name, grow_network=True, grow_to_mean=True) \
        if agent_type == "SVDNet" else device_agent(agent_type, agent_name)
    steps = watch_steps(agent, cuda)
    for task in ("1", "2"):
        start = len(cuda.syncs)
        agent.learn_task(task, loader(images(task)))
        assert sites(cuda.syncs[start:]).count(LOSS_WATCH) == agent.task_epochs()  # one read per epoch
    allowed = GEM_SITES if agent_name == "GEM" else set()
    assert len(steps) >= 4 and all(set(sites(step)) <= allowed for step in steps), steps
    start = len(cuda.syncs)
    assert 0 <= agent.evaluate(loader([images("1", seed=5, augment=False), images("2", seed=6, augment=False)],
                                      shuffle=False)) <= 100
    assert sites(cuda.syncs[start:]) == ["agents/default.py (evaluate)"]  # the count of correct answers, once
    evaluation = {task: images(task, seed=seed, augment=False) for task, seed in (("1", 5), ("2", 6))}
    start = len(cuda.syncs)
    TaskStream(["1", "2"], {}, evaluation, 8, CUDA, task_agnostic=True).accuracies(
        Progress(), "2", [(agent, "1"), (agent, "2")], ["1", "2"])
    assert sites(cuda.syncs[start:]) == ["evaluation/task_agnostic.py (percentages)"] * 2  # once a task, all rules
    misplaced = [path for path, tensor in tensors_of(agent.training_state()) if tensor.device != CUDA]
    assert misplaced == []


def test_gem_projection_goes_to_the_cpu_and_back_explicitly(cuda):
    generator = torch.Generator().manual_seed(0)
    memories = torch.randn(3, 50, generator=generator).to(CUDA)
    gradient = -memories.sum(0)  # against every memory: the projection moves it
    start = len(cuda.syncs)
    projected = project_gradient(gradient, memories, margin=0.5)
    assert sites(cuda.syncs[start:]) == ["agents/exp_replay.py (project_gradient)"] * 3  # two copies there, one back
    assert projected.device == CUDA and bool((memories @ projected >= -1e-3).all())


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # simulated: autocast is off without CUDA
@pytest.mark.parametrize("overrides", [
    {}, {"optimizer": "SGD", "weight_decay": 0.01}, {"grow_network": True, "amp": True},
    pytest.param({"grow_network": True, "compile": True}, marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a GPU: torch.compile does not trace the simulation's tensors"))])
def test_zero_forgetting_is_bit_exact_on_the_device(cuda, overrides, eager_compile):
    """Task 1's logits, frozen components and head after tasks 2 and 3: bit-identical (cuDNN as under
    ``--benchmark``)."""
    agent = device_agent(tasks=("1", "2", "3"), **overrides)
    probe = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(9)).to(CUDA)
    on_device = [[(inputs.to(CUDA), targets.to(CUDA), tasks) for inputs, targets, tasks in batches(task)]
                 for task in ("1", "2", "3")]
    agent.learn_task("1", on_device[0])
    logits = agent.network_logits(agent.task_network("1"), "1", probe)
    prefix = agent.task_identifiers[0]
    frozen = [(layer.N[:, :k].clone(), layer.C[:k].clone(), layer.Sigma[:k].clone())
              for layer, k in zip(agent.layers, prefix)]
    head = [p.clone() for p in agent.model.last["1"].parameters()]
    agent.learn_task("2", on_device[1])
    agent.learn_task("3", on_device[2])
    assert torch.equal(agent.network_logits(agent.task_network("1"), "1", probe), logits)
    for layer, k, (N, C, Sigma) in zip(agent.layers, prefix, frozen):
        assert torch.equal(layer.N[:, :k], N) and torch.equal(layer.C[:k], C) and torch.equal(layer.Sigma[:k], Sigma)
    assert all(torch.equal(p, before) for p, before in zip(agent.model.last["1"].parameters(), head))


def test_per_task_networks_with_batchnorm_statistics_are_built_on_the_device(cuda, monkeypatch):
    """VGG with BatchNorm (narrowed to 8 channels a layer) and ``--save_running_stats``: each task's statistics,
    saved on the CPU and loaded, folded into its network on the device; its multiply-adds counted there."""
    monkeypatch.setattr(models.vgg_16_bn, "VGG16_CFG", [8 if item != "M" else item for item in VGG16_CFG])
    agent = device_agent(model=("vgg_16_bn", "vgg16_bn_cifar100_SVD"), save_running_stats=True)
    for task in ("1", "2"):
        agent.learn_task(task, loader(images(task, n=4), batch_size=4))
    buffer = io.BytesIO()
    torch.save(agent.running_stats, buffer)
    buffer.seek(0)
    agent.load_running_stats(torch.load(buffer, map_location="cpu", weights_only=True), "a test")
    network = agent.task_network("1")
    assert all(tensor.device == CUDA for tensor in [*network.parameters(), *network.buffers()])
    assert count_multiply_adds(network, (3, 32, 32)) > 0
    assert 0 <= agent.evaluate(loader(images("1", n=4, augment=False), shuffle=False)) <= 100


@pytest.mark.parametrize("agent_type, agent_name", [("SVDNet", "SVDNet"), ("regularization", "SI"),
                                                    ("regularization", "EWC"), ("exp_replay", "GEM"),
                                                    ("packnet", "PackNet"), ("pnn", "PNN")])
def test_a_checkpoint_loaded_on_the_cpu_continues_on_the_device(cuda, agent_type, agent_name):
    """The state saved in the middle of task 2 (as a checkpoint is, loaded with ``map_location="cpu"``) continues on
    the device: optimizer state, anchors, importances, SI's sums, the memory, PackNet's owners, PNN's columns."""
    saved = io.BytesIO()

    class Interrupt(Exception):
        pass

    def interrupt(report):
        torch.save(agent.training_state(), saved)
        raise Interrupt

    agent = device_agent(agent_type, agent_name, schedule=[1, 2])
    agent.learn_task("1", loader(images("1")))
    with pytest.raises(Interrupt):
        agent.learn_task("2", loader(images("2")), on_epoch=interrupt)
    saved.seek(0)
    resumed = device_agent(agent_type, agent_name, schedule=[1, 2])
    resumed.load_training_state(torch.load(saved, map_location="cpu", weights_only=True))
    resumed.learn_task("2", loader(images("2")))
    assert resumed.tasks_trained == ["1", "2"]
    assert [path for path, tensor in tensors_of(resumed.training_state()) if tensor.device != CUDA] == []


@pytest.mark.parametrize("agent_type, agent_name, own", [("SVDNet", "SVDNet", {}),
                                                         ("packnet", "PackNet", {"post_prune_epochs": 1})])
def test_the_captured_step_is_the_eager_step_bit_for_bit(cuda, monkeypatch, agent_type, agent_name, own):
    """Two tasks of 3 epochs of batches 4, 4 and 2 (the learning rate dropping before the third; PackNet then
    retrains one more) with ``--cuda_graph``: captured and replayed (by CUDA on a GPU, by ``SimulatedGraphs`` on the
    simulated device), and the same static-tensor step run eagerly, both with the capturable optimizer and
    ``--benchmark``'s cuDNN settings: the same weights, bit for bit."""
    states, counts = [], Counter()
    for capture in (True, False):
        agent = device_agent(agent_type, agent_name, schedule=[2, 3], cuda_graph=True, **own)
        if isinstance(cuda, SimulatedCuda):
            monkeypatch.setattr(agents.default, "CudaGraphs",
                                lambda device: SimulatedGraphs(cuda, agent) if capture else None)
        elif not capture:
            monkeypatch.setattr(agents.default, "CudaGraphs", lambda device: None)
        for task in ("1", "2"):
            agent.learn_task(task, loader(images(task, n=10), batch_size=4))
            if capture:
                counts.update(agent.training_step.counts)
        states.append(agent.model.state_dict())
    assert counts["captured"] >= 6 and counts["replayed"] > counts["captured"]
    assert list(states[0]) == list(states[1])
    assert all(torch.equal(states[0][name], states[1][name]) for name in states[0])


def test_a_nan_loss_is_caught_on_the_device_and_named(cuda):
    agent = device_agent(perp_wt=float("nan"))
    with pytest.raises(UserError, match=r"at task 1, epoch 1, iteration 1 \(bad term: orthogonality\)"):
        agent.learn_task("1", loader(images("1")))


def test_the_loss_watch_reads_nothing_per_step_and_names_the_first_non_finite_step(cuda):
    watch = LossWatch()
    finite = {"ce": torch.tensor(1.0, device=CUDA), "loss": torch.tensor(1.0, device=CUDA)}
    infinite = {"ce": torch.tensor(float("inf"), device=CUDA), "loss": torch.tensor(float("inf"), device=CUDA)}
    start = len(cuda.syncs)
    for terms in [finite, infinite, finite]:  # an epoch whose loss was infinite, then a new one from its start
        watch.step(terms)
    watch.begin_epoch()
    for terms in [finite, finite, infinite, finite]:
        watch.step(terms)
    assert cuda.syncs[start:] == []
    with pytest.raises(UserError, match=r"the loss became inf at task 7, epoch 2, iteration 3 \(bad term: ce\)"):
        watch.check("7", 1)
    assert sites(cuda.syncs[start:]) == [LOSS_WATCH]
    healthy = LossWatch()
    healthy.step(finite)
    assert healthy.check("7", 0) == {"ce": 1.0, "loss": 1.0}


def test_the_driver_trains_and_evaluates_a_saved_model_on_the_device(cuda, workdir, cifar100_root, capsys,
                                                                     monkeypatch):
    """``--gpuid 0`` end to end (two tasks), then ``--loadmodel`` of what it saved, on the device."""
    if isinstance(cuda, SimulatedCuda):
        monkeypatch.setattr(experiment.config, "pick_device", lambda gpuid: CUDA)
        monkeypatch.setattr("utils.environment.device_name", lambda device: "simulated")
    flags = ["--dataset", "CIFAR100", "--dataroot", cifar100_root, "--gpuid", "0", "--schedule", "1", "--repeat", "1",
             "--first_split_size", "50", "--other_split_size", "50", "--grow_network", "--benchmark",
             "--exp_name", "device"]
    assert iBatchLearn.main(flags) == 0, capsys.readouterr().err
    record = json.loads((workdir / "results" / "device_sparse_wt0.01" / "output_run0.json").read_text())
    assert record["environment"]["device"] == str(CUDA)
    first, second = record["acc_matrix"]
    assert record["acc_matrix"][second][first] == record["acc_matrix"][first][first]  # zero forgetting
    assert iBatchLearn.main([*flags, "--loadmodel", "device_sparse_wt0.01"]) == 0, capsys.readouterr().err
    evaluated = json.loads((workdir / "results" / "device_sparse_wt0.01" / "output_eval.json").read_text())
    assert evaluated["acc"] == record["acc"]


def test_a_training_step_dispatches_the_same_aten_operations_on_the_simulated_device_but_the_cpus_layout_copies():
    """``aten_ops_per_step`` of the benchmark: the dense Net's step dispatches fewer operations than Net_SVD's,
    whose count grows with the tasks frozen before (task 20). The count is the code's: on the device it is the
    CPU's less the CPU's channels-last copies (the input's, the flattened features', and each SVD layer's composed
    kernel's), which the device, in the default memory format, does not make."""
    on_cpu = aten_operations_per_step(torch.device("cpu"))
    with SimulatedCuda():
        on_device = aten_operations_per_step(CUDA)
    assert 0 < on_device["dense"] < on_device["svd_task1"] < on_device["svd_task20"]
    svd_layers = 5
    assert {name: on_cpu[name] - count for name, count in on_device.items()} == {
        "dense": 2, "svd_task1": 2 + svd_layers, "svd_task20": 2 + svd_layers}
