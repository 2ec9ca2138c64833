"""PackNet: the prune mask, the step under plain SGD, zero forgetting under the harness's optimizers, per-task
evaluation, its size, its errors, and a run killed and resumed, then evaluated from its saved model."""
import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

import models.vgg_16_bn
from agents.packnet import PackNet, PackNetSettings, prunable_layers, pruned_by_magnitude
from helpers import (assert_killed_run_resumes_exactly, assert_state_saved_mid_task_continues_exactly, batches,
                     run_driver)
from models import build_model
from models.vgg_16_bn import VGG16_CFG

NET = ("customnet", "Net")
VGG = ("vgg_16_bn", "vgg16_bn_cifar100")
DRIVER = ["--agent_type", "packnet", "--agent_name", "PackNet", "--model_type", "customnet", "--model_name", "Net"]


def make_agent(model=NET, tasks=("1", "2", "3"), **settings) -> PackNet:
    """PackNet with a head per task, built from seed 0; one epoch a task and one of retraining unless told."""
    torch.manual_seed(0)
    network = build_model(*model)
    network.add_heads({task: 2 for task in tasks})
    return PackNet(network, PackNetSettings(**{"schedule": [1], "print_freq": 1000, "post_prune_epochs": 1,
                                               **settings}))


@pytest.fixture
def narrow_vgg(monkeypatch):
    """VGG16-BN with 8 channels a layer: its BatchNorms, quickly."""
    monkeypatch.setattr(models.vgg_16_bn, "VGG16_CFG", [8 if item != "M" else item for item in VGG16_CFG])


def logits_of(agent, task, inputs):
    with torch.no_grad():
        return agent.network_logits(agent.task_network(task), task, inputs)


@pytest.mark.parametrize("fraction, n", [(0.5, 7), (0.5, 8), (0.75, 10), (0.01, 20)])
def test_the_prune_mask_is_the_candidates_at_or_below_the_cutoff_of_their_sorted_magnitudes(fraction, n):
    generator = torch.Generator().manual_seed(n)
    weight = torch.randn(6, 5, generator=generator)
    weight[0, :3] = weight[1, 0]  # ties at some magnitude
    candidates = torch.zeros(30, dtype=torch.bool)
    candidates[torch.randperm(30, generator=generator)[:n]] = True
    candidates = candidates.view(6, 5)
    ordered = weight[candidates].abs().sort().values
    rank = int(fraction * n) + (fraction * n - int(fraction * n) >= 0.5)  # Python 2's round: 3.5 -> 4
    expected = candidates & (weight.abs() <= ordered[rank - 1]) if rank else torch.zeros_like(candidates)
    assert torch.equal(pruned_by_magnitude(weight, candidates, fraction), expected)


def test_freed_weights_left_at_zero_are_all_pruned_with_a_cutoff_of_zero():
    """The published ``|w| ≤ cutoff``: more zeros than the fraction asks for are all pruned, nothing else is."""
    weight = torch.tensor([0.0, 0.0, 0.0, 0.3, -0.2, 0.0])
    pruned = pruned_by_magnitude(weight, torch.ones(6, dtype=torch.bool), 0.5)
    assert pruned.tolist() == [True, True, True, False, False, True]


def test_under_plain_sgd_a_step_is_the_authors_masked_gradient_step():
    """Task 2's first step: ``w − lr·g`` on the weights it owns and on its head, nothing else moves."""
    agent = make_agent(optimizer="SGD", momentum=0.0, lr=0.1)
    agent.learn_task("1", batches("1"))
    for dropout in (m for m in agent.model.modules() if isinstance(m, torch.nn.Dropout)):
        dropout.p = 0.0
    x, y, tasks = batches("2")[0]
    reference = copy.deepcopy(agent.model).train()
    before = {name: p.detach().clone() for name, p in reference.named_parameters()}
    (F.cross_entropy(reference(x, "2"), y, reduction="sum") / len(y)).backward()
    gradients = {name: p.grad for name, p in reference.named_parameters()}
    agent.training_heads = ["2"]
    agent.begin_task("2")
    agent.model.train()
    agent.observe(x, y, tasks)
    owned = {f"{name}.weight": agent.owners[name] == 2 for name, _ in agent.layers}
    assert all(bool(mask.any()) for mask in owned.values())
    for name, p in agent.model.named_parameters():
        stepped = before[name].add(gradients[name], alpha=-0.1) if gradients[name] is not None else before[name]
        if name in owned:
            expected = torch.where(owned[name], stepped, before[name])
        else:
            expected = stepped if name.startswith("last.2.") else before[name]
        assert torch.equal(p.detach(), expected), name


@pytest.mark.parametrize("model, overrides", [
    (NET, {}), (NET, {"optimizer": "SGD"}), (NET, {"optimizer": "SGD", "weight_decay": 0.01}),
    (NET, {"weight_decay": 0.01, "post_prune_epochs": 0}), (VGG, {"optimizer": "SGD", "weight_decay": 0.01}),
    (VGG, {"save_running_stats": True})], ids=["Adam", "SGD-momentum", "SGD-weight-decay", "Adam-no-retraining",
                                              "VGG-SGD-weight-decay", "VGG-Adam-running-stats"])
def test_later_tasks_leave_earlier_tasks_logits_weights_biases_and_batchnorm_bit_identical(model, overrides,
                                                                                          narrow_vgg):
    agent = make_agent(model, **overrides)
    probe = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    agent.learn_task("1", batches("1"))
    first = logits_of(agent, "1", probe)
    weights = {f"{name}.weight" for name, _ in agent.layers}
    shared = {name: p.clone() for name, p in agent.model.named_parameters()
              if not name.startswith("last.") and name not in weights}  # biases, BatchNorm
    assert shared
    buffers = {name: b.clone() for name, b in agent.model.named_buffers()}
    agent.learn_task("2", batches("2"))
    second = logits_of(agent, "2", probe)
    owned = {name: layer.weight[agent.owners[name] == 2].clone() for name, layer in agent.layers}
    agent.learn_task("3", batches("3"))
    assert torch.equal(logits_of(agent, "1", probe), first) and torch.equal(logits_of(agent, "2", probe), second)
    for name, layer in agent.layers:
        assert torch.equal(layer.weight[agent.owners[name] == 2], owned[name])
    parameters = dict(agent.model.named_parameters())
    assert all(torch.equal(parameters[name], value) for name, value in shared.items())
    assert all(torch.equal(b, buffers[name]) for name, b in agent.model.named_buffers())


def test_pruned_weights_are_zero_after_retraining_and_each_task_keeps_what_the_rule_leaves():
    agent = make_agent(post_prune_epochs=2)
    agent.learn_task("1", batches("1"))
    sizes = [layer.weight.numel() for _, layer in agent.layers]
    assert agent.units_added() == {0: [n - math.floor(n / 2 + 0.5) for n in sizes]}  # no ties among random weights
    for name, layer in agent.layers:
        free = agent.owners[name] == 0
        assert int(free.sum()) == math.floor(free.numel() / 2 + 0.5) and not layer.weight[free].any()
    agent.learn_task("2", batches("2"))
    assert agent.units_added()[1] == [int((agent.owners[name] == 2).sum()) for name, _ in agent.layers]
    assert agent.results_keys() == {"prunable_weights": sizes}


def test_a_task_is_evaluated_with_the_weights_of_the_tasks_up_to_it_and_its_head():
    agent = make_agent()
    for task in ("1", "2", "3"):
        agent.learn_task(task, batches(task))
    probe = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    reference = copy.deepcopy(agent.model).eval()
    with torch.no_grad():
        for (name, layer), (_, copied) in zip(agent.layers, prunable_layers(reference)):
            owners = agent.owners[name]
            copied.weight.mul_(((owners >= 1) & (owners <= 2)).float())
        expected = reference(probe, "2")
    torch.testing.assert_close(logits_of(agent, "2", probe), expected)


def test_the_model_size_is_the_float32_parameters_and_an_owner_per_weight_at_the_bits_of_the_tasks():
    agent = make_agent(tasks=("1", "2", "3", "4"))
    parameters = sum(p.numel() for p in agent.model.parameters())
    weights = sum(layer.weight.numel() for _, layer in agent.layers)
    for tasks, bits in ((1, 1), (2, 2), (3, 2), (4, 3)):
        agent.learn_task(str(tasks), batches(str(tasks), n_batches=1))
        assert agent.model_size_mb() == pytest.approx((4 * parameters + weights * bits / 8) / 1e6)


@pytest.mark.parametrize("flags, message", [
    (["--prune_perc_per_layer", "0"], "--prune_perc_per_layer must lie in (0, 1), got 0.0"),
    (["--prune_perc_per_layer", "1"], "--prune_perc_per_layer must lie in (0, 1), got 1.0"),
    (["--post_prune_epochs", "-1"], "--post_prune_epochs must be 0 or more, got -1"),
    (["--model_type", "customnet_SVD", "--model_name", "Net_SVD"],
     "PackNet runs on a dense network, not --model_type customnet_SVD --model_name Net_SVD: use --model_type "
     "customnet --model_name Net or --model_type vgg_16_bn --model_name vgg16_bn_cifar100"),
])
def test_bad_values_are_one_line_errors(workdir, capsys, flags, message):
    status, _, err = run_driver(capsys, *DRIVER, *flags)
    assert status == 2 and err == f"error: {message}\n"


@pytest.mark.parametrize("stop_after", [1, 2], ids=["before-pruning", "in-retraining"])
def test_a_state_saved_in_a_task_continues_bit_identically(stop_after):
    assert_state_saved_mid_task_continues_exactly(lambda: make_agent(post_prune_epochs=2, weight_decay=0.01),
                                                  stop_after)


def test_killed_in_retraining_and_between_tasks_it_resumes_exactly_and_its_saved_model_evaluates(
        tmp_path, cifar10_root, capsys, monkeypatch):
    """Two tasks of one epoch and two of retraining, a checkpoint after each: SIGKILLed in task 1's retraining and
    between the tasks; then ``--loadmodel`` of the saved model gives the run's accuracies."""
    flags = ["--gpuid", "-1", "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--schedule", "1",
             "--post_prune_epochs", "2", "--batch_size", "10", "--repeat", "1", "--print_freq", "1000",
             "--exp_name", "pk", "--checkpoint_interval", "0", *DRIVER]
    interrupted = assert_killed_run_resumes_exactly(tmp_path, flags, "pk", kills=[2, 4])
    record = json.loads((interrupted / "results" / "pk" / "output_run0.json").read_text())
    assert len(record["channels"]) == 2 and len(record["prunable_weights"]) == 5
    monkeypatch.chdir(interrupted)
    status, table, _ = run_driver(capsys, *flags, "--loadmodel", "pk")
    assert status == 0, table
    evaluated = json.loads((interrupted / "results" / "pk" / "output_eval.json").read_text())
    assert evaluated["acc"] == record["acc"] and evaluated["model_size"] == record["model_size"]
