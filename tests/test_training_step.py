"""The loop's one step function, run eagerly, from static tensors, or captured and replayed (``--cuda_graph``,
``agents.step``).

A real capture needs a GPU: the GPU check's ``graph_identity`` step replays every capturable method's step against
the eager one, and ``tests/test_cuda_path.py`` captures one on CUDA. Here the static-tensor step runs on the CPU,
bit-identical to the step without it (over tasks with a partial last batch, a learning-rate drop, a run killed and
resumed), and on the simulated ``cuda:0`` a stand-in for CUDA's graphs (``SimulatedGraphs``) checks what a capture
depends on, for each kind of step (``STEP_KINDS``): which batches warm up, which are captured and which replay; that
nothing in a captured step reads a device value; that no graph is replayed after its learning rates, optimizer state
or layer modes changed; and that a replay reads the batch copied in (bit-identical to the same step run eagerly)."""
import dataclasses
import logging

import pytest
import torch

import agents.default
from agents import agent_class, agent_types
from agents.optim import capture_safe_optimizer, valid_optimizers
from agents.step import capture_obstacle
from dataloaders import BatchTransform, TaskData, TaskLoader
from experiment.config import prepared_run, read_config
from helpers import (QUICK, assert_killed_run_resumes_exactly, assert_same_content, assert_same_outputs,
                     driver_error, outputs, run_driver)
from models import build_model
from simulated_cuda import DEVICE, SimulatedCuda, SimulatedGraphs

METHODS = [(agent_type, name) for agent_type, names in agent_types().items() for name, cls in names.items()]
CAPTURABLE = [(agent_type, name) for agent_type, name in METHODS
              if not capture_obstacle(agent_class(agent_type, name), "Adam")]
NOT_CAPTURED = {"GEM", "HAT"}
"""GEM decides on the host whether to project and solves its quadratic program on the CPU; HAT anneals its gates'
scale by a number kept in Python."""
STEP_KINDS = [("default", "NormalNN"), ("SVDNet", "SVDNet"), ("regularization", "EWC"), ("regularization", "SI"),
              ("exp_replay", "Naive_Rehearsal"), ("packnet", "PackNet"), ("gpm", "GPM"), ("pnn", "PNN")]
"""A capturable method for each way a step differs from fine-tuning's: CACL's terms and restores, a penalty, SI's
own gradients and sums, rehearsal's mixed batches, PackNet's masks and retraining, GPM's projections, PNN's columns
(the others reuse their code; the GPU check's ``graph_identity`` captures every one)."""


def method_agent(agent_type, agent_name, device="cpu", **settings):
    """A method on the dense ``Net`` (``Net_SVD`` for CACL) with heads "1" and "2", built from seed 0; the learning
    rate drops after the first epoch of two; PackNet retrains one epoch more, at the learning rate of the second (so
    only its own word tells the step it changed); GPM's memory from 2 examples."""
    cls = agent_class(agent_type, agent_name)
    torch.manual_seed(0)
    model = build_model(*(("customnet_SVD", "Net_SVD") if agent_type == "SVDNet" else ("customnet", "Net")))
    model.add_heads({"1": 2, "2": 2})
    own = {name: value for name, value in (("reg_coef", 10.0), ("memory_size", 4), ("post_prune_epochs", 1),
                                           ("gpm_examples", 2))
           if name in {field.name for field in dataclasses.fields(cls.Settings)}}
    return cls(model, cls.Settings(**{"schedule": [1, 2], "print_freq": 1000, "device": str(device), **own,
                                      **settings}))


def task_loader(task, device="cpu", images=5, batch_size=2):
    """``images`` random images of two classes in batches of ``batch_size`` (5 in 2: 2, 2 and a last one of 1),
    shuffled and augmented from the loader's own generator (the same for the same task)."""
    generator = torch.Generator().manual_seed(int(task))
    data = TaskData(task, torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=generator),
                    torch.randint(0, 2, (images,), generator=generator), BatchTransform([0.5], [0.25], augment=True))
    return TaskLoader(data, batch_size, shuffle=True, device=device, generator=torch.Generator().manual_seed(7))


def trained(agent, device="cpu", tasks=("1", "2"), **loader):
    """``agent`` after ``tasks``; returns every step's loss terms (copied) and the steps' counts by kind
    (``TrainingStep.counts``), over the tasks."""
    losses, counts = [], {}
    step = agent.watched_step

    def recorded(*batch):
        terms = step(*batch)
        losses.append({name: value.clone() for name, value in terms.items()})
        return terms

    agent.watched_step = recorded
    for task in tasks:
        agent.learn_task(task, task_loader(task, device, **loader))
        for kind, count in agent.training_step.counts.items():
            counts[kind] = counts.get(kind, 0) + count
    return losses, counts


def assert_same_training(expected, actual):
    """The same loss terms at every step, the same model and state at the end, bit for bit."""
    (expected_agent, expected_losses), (agent, losses) = expected, actual
    assert_same_content(expected_losses, losses, "losses")
    state, reference = agent.training_state(), expected_agent.training_state()
    del state["task_seconds"], reference["task_seconds"]
    assert_same_content(reference, state, "state")


# ---------------------------------------------------------------- which steps can be captured


def test_every_method_says_whether_its_step_can_be_captured():
    assert {name for _, name in METHODS} - {name for _, name in CAPTURABLE} == NOT_CAPTURED
    assert capture_obstacle(agent_class("exp_replay", "GEM"), "Adam").startswith("GEM's step decides on the host")
    assert capture_safe_optimizer("Adam") and capture_safe_optimizer("amsgrad") and capture_safe_optimizer("SGD")
    unsafe = [name for name in valid_optimizers() if not capture_safe_optimizer(name)]
    assert unsafe and capture_obstacle(agent_class("default", "NormalNN"), unsafe[0]).startswith(f"--optimizer {unsafe[0]}")


def test_the_cpu_says_once_that_it_runs_the_captured_step_eagerly(caplog):
    with caplog.at_level(logging.WARNING), prepared_run(read_config([*QUICK, "--cuda_graph"])):
        pass
    assert caplog.text.count("--cuda_graph captures the training step on CUDA only") == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING), prepared_run(read_config([*QUICK, "--cuda_graph", "--agent_type",
                                                                      "exp_replay", "--agent_name", "GEM"])):
        pass
    assert "--cuda_graph: GEM's step decides on the host" in caplog.text and "it runs eagerly" in caplog.text


def test_capture_and_compile_are_one_or_the_other(capsys):
    assert driver_error(capsys, *QUICK, "--cuda_graph", "--compile") == (
        "--cuda_graph and --compile: choose one (a compiled step is not captured)")


# ---------------------------------------------------------------- the static-tensor step on the CPU


@pytest.mark.parametrize("agent_type, agent_name", [("SVDNet", "SVDNet"), ("exp_replay", "Naive_Rehearsal")])
def test_the_static_step_is_the_eager_step_bit_for_bit(agent_type, agent_name):
    """Two tasks of two epochs of batches 2, 2 and 1 (a learning-rate drop between): every step's loss terms and the
    final state as without ``--cuda_graph``; every batch of one task went through the static tensors, rehearsal's
    batches of both tasks did not. (What differs between methods is what they do in a step, which the captured step
    on the simulated device checks for each kind of step, against the same static-tensor step.)"""
    eager = method_agent(agent_type, agent_name)
    expected = (eager, trained(eager)[0])
    static = method_agent(agent_type, agent_name, cuda_graph=True)
    losses, counts = trained(static)
    assert_same_training(expected, (static, losses))
    assert counts["static"] > 0
    assert (counts.get("eager", 0) > 0) == ("Rehearsal" in agent_name)  # task 2 mixes in the memory's samples


def test_a_captured_run_killed_and_resumed_gives_the_eager_runs_outputs(tmp_path, monkeypatch, cifar10_root,
                                                                        capsys):
    """The driver with ``--cuda_graph`` on the CPU (fine-tuning the dense ``Net``: a method without a swept flag, so
    its experiment is ``--exp_name``; 2 tasks of 50 images in batches of 16, a last one of 2; 2 epochs), killed
    (SIGKILL) in task 1's second epoch and in task 2's, and resumed: the outputs and table of the same run
    uninterrupted, and the outputs of a run without ``--cuda_graph``."""
    flags = [*QUICK[:2], "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--first_split_size", "5",
             "--other_split_size", "5", "--schedule", "1", "2", "--batch_size", "16", "--repeat", "1",
             "--checkpoint_interval", "0", "--print_freq", "1000", "--exp_name", "graph", "--agent_type",
             "feature_extraction", "--agent_name", "FeatureExtraction", "--freeze_after", "1", "--model_type",
             "customnet", "--model_name", "Net"]
    interrupted = assert_killed_run_resumes_exactly(tmp_path, [*flags, "--cuda_graph"], "graph", kills=[1, 4])
    (tmp_path / "eager").mkdir()
    monkeypatch.chdir(tmp_path / "eager")
    status, _, _ = run_driver(capsys, *flags)
    assert status == 0
    assert_same_outputs(outputs(tmp_path / "eager"), outputs(interrupted))


# ---------------------------------------------------------------- captured and replayed (simulated)


@pytest.fixture
def simulated():
    with SimulatedCuda() as simulation:
        yield simulation


def captured_and_eager(simulated, monkeypatch, agent_type, agent_name, **settings):
    """The method trained on the simulated device with ``--cuda_graph``: captured by ``SimulatedGraphs``, and run
    eagerly from the same static tensors (the optimizer capturable in both): ``(agent, losses, counts)`` of each."""
    runs = []
    for capture in (True, False):
        agent = method_agent(agent_type, agent_name, device=DEVICE, cuda_graph=True, **settings)
        monkeypatch.setattr(agents.default, "CudaGraphs",
                            lambda device: SimulatedGraphs(simulated, agent) if capture else None)
        runs.append((agent, *trained(agent, DEVICE)))
    return runs


@pytest.mark.parametrize("agent_type, agent_name", STEP_KINDS)
def test_a_captured_step_reads_no_device_value_and_replays_as_it_runs_eagerly(simulated, monkeypatch, agent_type,
                                                                              agent_name):
    """Each kind of step captured: no sync in it, no graph replayed stale (``SimulatedGraphs``: PackNet's retraining
    at the learning rate of the epoch before is captured afresh only because it says its step changed), the losses
    and state of the same step run eagerly, bit for bit; the optimizer in its capturable form. Rehearsal's batches
    of both tasks run eagerly (their grouping into heads varies), its first task's are captured."""
    (captured, losses, counts), (eager, eager_losses, eager_counts) = captured_and_eager(simulated, monkeypatch,
                                                                                        agent_type, agent_name)
    assert counts["captured"] > 0 and counts["replayed"] > 0 and "static" not in counts
    assert eager_counts["static"] > 0 and "captured" not in eager_counts
    assert ("eager" in counts) == (agent_name == "Naive_Rehearsal")
    assert all(group["capturable"] for group in captured.optimizer.param_groups if "capturable" in group)
    assert_same_training((eager, eager_losses), (captured, losses))


def test_each_batch_shape_warms_up_then_is_captured_and_replayed_until_the_learning_rate_drops(simulated,
                                                                                                 monkeypatch):
    """A task of 3 epochs of batches 2, 2 and 1, the learning rate dropping before the third: the full batches warm
    up at the first, are captured at the second and replayed; the last batch is its own graph, warmed up in the
    first epoch and captured in the second; the third epoch warms up and captures afresh. A new task starts over."""
    (captured, _, counts), _ = captured_and_eager(simulated, monkeypatch, "default", "NormalNN", schedule=[2, 3])
    per_task = {"warm_up": 4, "captured": 3, "replayed": 5}  # epochs: W C | W, R R | C, W C | W
    assert counts == {kind: 2 * count for kind, count in per_task.items()}
    assert captured.training_step.counts == per_task


def test_a_checkpoint_of_a_captured_run_continues_eagerly_and_the_reverse(simulated, monkeypatch):
    """The optimizer's form follows the run, not the checkpoint (``load_state_dict`` takes the saved one's): a state
    saved mid-task by a captured run continues without ``--cuda_graph``, and one saved without it continues
    captured."""
    for saved_with, resumed_with in ((True, False), (False, True)):
        agent = method_agent("default", "NormalNN", device=DEVICE, cuda_graph=saved_with)
        monkeypatch.setattr(agents.default, "CudaGraphs", lambda device: SimulatedGraphs(simulated, agent))
        saved = {}

        def interrupt(report):
            saved["state"] = agent.training_state()
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            agent.learn_task("1", task_loader("1", DEVICE), on_epoch=interrupt)
        resumed = method_agent("default", "NormalNN", device=DEVICE, cuda_graph=resumed_with)
        resumed.load_training_state(saved["state"])
        monkeypatch.setattr(agents.default, "CudaGraphs", lambda device: SimulatedGraphs(simulated, resumed))
        resumed.learn_task("1", task_loader("1", DEVICE))
        steps = [state["step"] for state in resumed.optimizer.state.values()]
        assert all(group["capturable"] == resumed_with for group in resumed.optimizer.param_groups)
        assert steps and all(step.device == (DEVICE if resumed_with else torch.device("cpu")) for step in steps)


def test_without_the_flag_every_step_runs_on_the_batch_itself():
    _, counts = trained(method_agent("default", "NormalNN"), tasks=("1",))
    assert counts == {"eager": 6}
