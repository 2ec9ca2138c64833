"""PackNet: the prune mask, the step under plain SGD, zero forgetting under the harness's optimizers, per-task
evaluation, its size, its errors, and a run killed and resumed, then evaluated from its saved model."""
import copy
import math

import pytest
import torch

from agents.packnet import PackNet, PackNetSettings, prunable_layers, pruned_by_magnitude
from helpers import (DENSE_CHOICES, assert_killed_run_resumes_exactly, assert_saved_model_evaluates_as_trained,
                     assert_state_saved_mid_task_continues_exactly, batches, driver_error, evaluated_logits,
                     first_step_of_task_2)
from models import build_model

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
    reference, before = first_step_of_task_2(agent, lambda model, x: model(x, "2"))
    owned = {f"{name}.weight": agent.owners[name] == 2 for name, _ in agent.layers}
    assert all(bool(mask.any()) for mask in owned.values())
    for name, p in reference.named_parameters():
        stepped = before[name] if p.grad is None else before[name].add(p.grad, alpha=-0.1)
        if name in owned:
            expected = torch.where(owned[name], stepped, before[name])
        else:
            expected = stepped if name.startswith("last.2.") else before[name]
        assert torch.equal(dict(agent.model.named_parameters())[name].detach(), expected), name


def test_under_an_optimizer_coupling_the_weights_the_step_is_on_the_gradient_the_task_may_use():
    """Adafactor's step of a weight depends on its row's and column's gradients: PackNet's step is Adafactor's on
    the gradient zeroed where task 2 does not own the weight (``make_grads_zero``), the rest written back."""
    agent = make_agent(optimizer="Adafactor", lr=0.01)
    reference, before = first_step_of_task_2(agent, lambda model, x: model(x, "2"))
    owned = {f"{name}.weight": agent.owners[name] == 2 for name, _ in agent.layers}
    for name, p in reference.named_parameters():
        if name in owned:
            p.grad.masked_fill_(~owned[name], 0)
    torch.optim.Adafactor([p for name, p in reference.named_parameters()
                           if name in owned or name.startswith("last.2.")], lr=0.01).step()
    parameters = dict(agent.model.named_parameters())
    for name, p in reference.named_parameters():
        if name in owned:
            expected = torch.where(owned[name], p, before[name])
        else:
            expected = p if name.startswith("last.2.") else before[name]
        assert torch.equal(parameters[name].detach(), expected.detach()), name


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
    first = evaluated_logits(agent, "1", probe)
    weights = {f"{name}.weight" for name, _ in agent.layers}
    shared = {name: p.clone() for name, p in agent.model.named_parameters()
              if not name.startswith("last.") and name not in weights}  # biases, BatchNorm
    assert shared
    buffers = {name: b.clone() for name, b in agent.model.named_buffers()}
    agent.learn_task("2", batches("2"))
    second = evaluated_logits(agent, "2", probe)
    owned = {name: layer.weight[agent.owners[name] == 2].clone() for name, layer in agent.layers}
    agent.learn_task("3", batches("3"))
    assert torch.equal(evaluated_logits(agent, "1", probe), first)
    assert torch.equal(evaluated_logits(agent, "2", probe), second)
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
    torch.testing.assert_close(evaluated_logits(agent, "2", probe), expected)


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
     f"PackNet runs on a dense network, not --model_type customnet_SVD --model_name Net_SVD: use {DENSE_CHOICES}"),
])
def test_bad_values_are_one_line_errors(workdir, capsys, flags, message):
    assert driver_error(capsys, *DRIVER, *flags) == message


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
    record = assert_saved_model_evaluates_as_trained(capsys, monkeypatch, interrupted, flags, "pk")
    sizes = record["prunable_weights"]
    assert len(sizes) == 5 and list(record["channels"]) == ["0", "1"]
    assert record["channels"]["0"] == [n - math.floor(n / 2 + 0.5) for n in sizes]  # task 1: half of each layer
    assert all(0 < kept <= n - first for kept, n, first in zip(record["channels"]["1"], sizes, record["channels"]["0"]))
