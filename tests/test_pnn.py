"""Progressive networks: the lateral rule against the equations written out, zero forgetting under the harness's
optimizers, the step under plain SGD, the first column as fine-tuning, the columns' width and size, the errors, and a
run killed and resumed, then evaluated from its saved model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agents.default import NormalNN, NormalNNSettings
from agents.pnn import PNN, PNNSettings
from helpers import (DENSE_CHOICES, assert_killed_run_resumes_exactly, assert_saved_model_evaluates_as_trained,
                     assert_state_saved_mid_task_continues_exactly, batches, driver_error, evaluated_logits,
                     first_step_of_task_2)
from models import build_model

NET = ("customnet", "Net")
VGG = ("vgg_16_bn", "vgg16_bn_cifar100")
DRIVER = ["--agent_type", "pnn", "--agent_name", "PNN", "--model_type", "customnet", "--model_name", "Net"]


def network(model=NET, tasks=("1", "2", "3")):
    torch.manual_seed(0)
    built = build_model(*model)
    built.add_heads({task: 2 + (task == "3") for task in tasks})
    return built


def make_agent(model=NET, tasks=("1", "2", "3"), **settings) -> PNN:
    """PNN with a head per task (task "3" of 3 classes), built from seed 0; one epoch a task."""
    return PNN(network(model, tasks), PNNSettings(**{"schedule": [1], "print_freq": 1000, **settings}))


def written_out(columns, head, x):
    """Rusu et al.'s column ``t`` in eval mode from the modules' tensors: ``h^k_t = f(W^k_t h^(k-1)_t +
    U^k_t σ(V^k_t [α_1 h^(k-1)_1, ...]))`` at every convolution but the first, its head
    ``W h_t + U V [α_1 m_1, ...]`` (no σ) on the last maps."""
    first = next(position for position, layer in enumerate(columns[0].layers) if isinstance(layer, nn.Conv2d))
    hs = [x] * len(columns)
    for position in range(len(columns[0].layers)):
        updated = []
        for t, column in enumerate(columns):
            layer, h = column.layers[position], hs[t]
            if isinstance(layer, nn.Conv2d):
                out = F.conv2d(h, layer.weight, layer.bias, layer.stride, layer.padding)
                if t > 0 and position != first:
                    lateral = column.laterals[str(position)]
                    mixed = torch.cat([lateral.alpha[j] * hs[j] for j in range(t)], 1)
                    reduced = F.relu(F.conv2d(mixed, lateral.V.weight, lateral.V.bias))
                    out = out + F.conv2d(reduced, lateral.U.weight, lateral.U.bias, layer.stride, layer.padding)
            elif isinstance(layer, nn.BatchNorm2d):
                out = F.batch_norm(h, layer.running_mean, layer.running_var, layer.weight, layer.bias, False, 0.0,
                                   layer.eps)
            elif isinstance(layer, nn.ReLU):
                out = F.relu(h)
            elif isinstance(layer, nn.MaxPool2d):
                out = F.max_pool2d(h, 2)
            elif isinstance(layer, nn.AvgPool2d):
                out = F.avg_pool2d(h, 2)
            else:
                assert isinstance(layer, nn.Dropout)
                out = h
            updated.append(out)
        hs = updated
    logits = hs[-1].flatten(1)
    for linear in head:
        logits = F.linear(logits, linear.weight, linear.bias)
    if len(columns) > 1:
        lateral = columns[-1].head_lateral
        mixed = torch.cat([lateral.alpha[j] * hs[j] for j in range(len(columns) - 1)], 1)
        reduced = F.conv2d(mixed, lateral.V.weight, lateral.V.bias).flatten(1)
        logits = logits + F.linear(reduced, lateral.U[1].weight, lateral.U[1].bias)
    return logits


@pytest.mark.parametrize("model, width", [(NET, 0.25), (VGG, 1.0)], ids=["Net", "VGG"])
def test_each_column_computes_the_lateral_rule_written_out(model, width, narrow_vgg):
    agent = make_agent(model, column_width=width)
    for task in ("1", "2", "3"):
        agent.learn_task(task, batches(task, n_batches=1, n_classes=2 + (task == "3")))
    assert agent.columns == {"1": 0, "2": 1, "3": 2} and len(agent.model.columns) == 3
    probe = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    for task, column in agent.columns.items():
        with torch.no_grad():
            expected = written_out(list(agent.model.columns)[:column + 1], agent.model.last[task], probe)
        torch.testing.assert_close(evaluated_logits(agent, task, probe), expected)


@pytest.mark.parametrize("model, overrides", [
    (NET, {}), (NET, {"optimizer": "SGD"}), (NET, {"optimizer": "SGD", "weight_decay": 0.01}),
    (VGG, {"weight_decay": 0.01})], ids=["Adam", "SGD-momentum", "SGD-weight-decay", "VGG-Adam-weight-decay"])
def test_later_tasks_leave_earlier_tasks_logits_columns_heads_and_batchnorm_bit_identical(model, overrides,
                                                                                         narrow_vgg):
    agent = make_agent(model, column_width=0.25 if model == NET else 1.0, **overrides)
    probe = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    agent.learn_task("1", batches("1"))
    first = evaluated_logits(agent, "1", probe)
    kept = {name: t.clone() for name, t in agent.model.state_dict().items()
            if name.startswith(("columns.0.", "last.1."))}
    agent.learn_task("2", batches("2"))
    second = evaluated_logits(agent, "2", probe)
    agent.learn_task("3", batches("3", n_classes=3))
    assert torch.equal(evaluated_logits(agent, "1", probe), first)
    assert torch.equal(evaluated_logits(agent, "2", probe), second)
    state = agent.model.state_dict()
    assert all(torch.equal(state[name], value) for name, value in kept.items())


def test_under_plain_sgd_only_the_new_column_and_its_head_step_by_minus_lr_times_gradient():
    agent = make_agent(column_width=0.25, optimizer="SGD", momentum=0.0, lr=0.1)
    reference, before = first_step_of_task_2(agent, lambda model, x: model(x, 1, "2"))
    parameters = dict(agent.model.named_parameters())
    for name, p in reference.named_parameters():
        moves = name.startswith(("columns.1.", "last.2."))
        assert (p.grad is not None) == moves, name  # earlier columns are constants to the new one
        expected = before[name].add(p.grad, alpha=-0.1) if moves else before[name]
        assert torch.equal(parameters[name].detach(), expected), name


def test_at_full_width_the_first_task_trains_as_fine_tuning():
    """Column 0 is the model's own layers and heads: the first task's weights and logits are fine-tuning's."""
    pnn = make_agent()
    tuned = NormalNN(network(), NormalNNSettings(schedule=[1], print_freq=1000))
    for agent in (pnn, tuned):
        torch.manual_seed(5)
        agent.learn_task("1", batches("1"))
    probe = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    tuned_state = tuned.model.state_dict()
    for name, value in pnn.model.state_dict().items():
        original = name.replace("columns.0.layers.", "")
        if name.startswith("columns.0."):
            original = tuned.model.layer_names[int(original.split(".")[0])] + original[original.index("."):]
        assert torch.equal(value, tuned_state[original]), name
    torch.testing.assert_close(evaluated_logits(pnn, "1", probe), evaluated_logits(tuned, "1", probe))


def test_columns_are_narrowed_and_the_size_counts_every_column_adapter_and_head():
    """``--column_width 0.25`` on ``Net``: 16, 16, 32, 32, 64 channels; the size after each task, counted here."""
    agent = make_agent(column_width=0.25)
    convolutions = [(3, 16, 3), (16, 16, 3), (16, 32, 3), (32, 32, 3), (32, 64, 2)]
    n_feat, classes = 64 * 4, {"1": 2, "2": 2, "3": 3}
    column = sum(i * o * k * k + o for i, o, k in convolutions)
    heads = sum(n_feat * n + n for n in classes.values())

    def adapters(earlier, task):
        into_layers = sum(earlier + earlier * i * i + i + i * o * k * k + o for i, o, k in convolutions[1:])
        return into_layers + earlier + earlier * 64 * 64 + 64 + n_feat * classes[task] + classes[task]

    expected = [column + heads, 2 * column + heads + adapters(1, "2"),
                3 * column + heads + adapters(1, "2") + adapters(2, "3")]
    for task, parameters in zip(("1", "2", "3"), expected):
        agent.learn_task(task, batches(task, n_batches=1, n_classes=classes[task]))
        assert [layer.out_channels for layer in agent.model.columns[-1].layers if isinstance(layer, nn.Conv2d)] == [
            16, 16, 32, 32, 64]
        assert agent.model_size_mb() == pytest.approx(4 * parameters / 1e6)
    assert sum(map(sum, agent.units_added().values())) == 3 * column + adapters(1, "2") + adapters(2, "3")
    assert agent.dense_feature_parameters() == sum(p.numel() for name, p in network().named_parameters()
                                                   if not name.startswith("last."))


def test_a_state_saved_in_a_task_continues_bit_identically():
    assert_state_saved_mid_task_continues_exactly(lambda: make_agent(column_width=0.25, schedule=[1, 2]), 1)


@pytest.mark.parametrize("flags, message", [
    (["--column_width", "0"], "--column_width must lie in (0, 1], got 0.0"),
    (["--column_width", "1.5"], "--column_width must lie in (0, 1], got 1.5"),
    (["--save_running_stats"], "--save_running_stats: PNN keeps each column's BatchNorm statistics with it already"),
    (["--compile"], "--compile is not available for PNN (each task's forward pass runs its own columns)"),
    (["--model_type", "vgg_16_bn", "--model_name", "vgg16_bn_cifar100_SVD"],
     f"PNN runs on a dense network, not --model_type vgg_16_bn --model_name vgg16_bn_cifar100_SVD: use "
     f"{DENSE_CHOICES}"),
])
def test_bad_values_are_one_line_errors(workdir, capsys, flags, message):
    assert driver_error(capsys, *DRIVER, *flags) == message


def test_killed_in_a_task_and_between_tasks_it_resumes_exactly_and_its_saved_model_evaluates(
        tmp_path, cifar10_root, capsys, monkeypatch):
    """Two tasks of two epochs, a checkpoint after each: SIGKILLed in task 1's second epoch and between the tasks;
    then ``--loadmodel`` of the saved model gives the run's accuracies."""
    flags = ["--gpuid", "-1", "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--schedule", "1", "2",
             "--column_width", "0.5", "--batch_size", "10", "--repeat", "1", "--print_freq", "1000",
             "--exp_name", "pnn", "--checkpoint_interval", "0", *DRIVER]
    interrupted = assert_killed_run_resumes_exactly(tmp_path, flags, "pnn", kills=[1, 3])
    record = assert_saved_model_evaluates_as_trained(capsys, monkeypatch, interrupted, flags, "pnn")
    assert [len(layers) for layers in record["channels"].values()] == [6, 6]
