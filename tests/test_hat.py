"""HAT's rules, each against a computation written out here: the gated forward, the attention regularizer, the scaled
weight gradients and the compensated, clamped embedding step (under plain SGD: the published rule), the same
protection of the step under other optimizers (on VGG16-BN too), the binary gates at evaluation, gates that are learnt,
its outputs (units added, model size), its errors, and a run killed and resumed, then evaluated from its saved
model."""
import logging

import pytest
import torch
import torch.nn.functional as F

from agents.default import NormalNN
from agents.hat import HAT, HATSettings
from helpers import (DENSE_CHOICES, assert_killed_run_resumes_exactly, assert_saved_model_evaluates_as_trained,
                     assert_state_saved_mid_task_continues_exactly, driver_error, evaluated_logits, operations)
from models import build_model
from tiny_convnet import conv_agent, conv_loader, conv_task, image_loader

SMAX, LAMB, LR, LR_EMBEDDING = 400.0, 0.75, 0.05, 0.05
NET = ("customnet", "Net")
VGG = ("vgg_16_bn", "vgg16_bn_cifar100")
DRIVER = ["--agent_type", "hat", "--agent_name", "HAT", "--model_type", "customnet", "--model_name", "Net"]


def make_agent(model=NET, tasks=("1", "2", "3"), **settings) -> HAT:
    """HAT on a dense network of the project with a head per task, built from seed 0; one epoch a task unless told."""
    torch.manual_seed(0)
    network = build_model(*model)
    network.add_heads({task: 2 for task in tasks})
    return HAT(network, HATSettings(**{"schedule": [1], "print_freq": 1000, **settings}))


def partly_used(agent, task="1"):
    """Give ``task`` embeddings whose binary gates lie strictly between 0 and 1 (every unit partly used)."""
    agent.embeddings[task] = [torch.linspace(-0.012, 0.012, len(e)) for e in agent.embeddings[task]]


def begin(agent, task, epoch_samples, position=0):
    """What ``learn_task`` does before its first step: the task's head and optimizer, the model in training mode
    (BatchNorm in eval mode after the first task), at ``position`` of an epoch of ``epoch_samples``."""
    agent.training_heads = [task]
    agent.begin_task(task)
    agent.current_task, agent.epoch_samples, agent.position = task, epoch_samples, position
    agent.model.train()
    agent.begin_epoch(task, 0)


def hand_forward(weights, gates, inputs, bn_training=True, running=None):
    """``TinyConvNet`` with a gate on each convolution's units (the second after its BatchNorm), written out."""
    x = F.relu(F.conv2d(inputs, weights["conv1.weight"], weights["conv1.bias"]) * gates[0].view(1, -1, 1, 1))
    x = F.conv2d(x, weights["conv2.weight"], padding=1)
    mean, var = running if running is not None else (torch.zeros(6), torch.ones(6))
    x = F.batch_norm(x, mean.clone(), var.clone(), weights["bn.weight"], weights["bn.bias"], training=bn_training)
    x = F.avg_pool2d(F.relu(x * gates[1].view(1, -1, 1, 1)), 2).flatten(1)
    return x


def published_step(agent, task, s, inputs, targets):
    """What ``Appr.train_epoch`` does with one batch under plain SGD (lr ``LR``, embeddings too at
    ``LR_EMBEDDING``), from the agent's parameters now: the parameters and the task's embeddings after the step."""
    weights = {name: p.detach().clone().requires_grad_() for name, p in agent.model.named_parameters()}
    embeddings = [e.detach().clone().requires_grad_() for e in agent.embeddings[task]]
    used = [torch.sigmoid(SMAX * e) for e in agent.embeddings["1"]]
    gates = [torch.sigmoid(s * e) for e in embeddings]
    statistics = (agent.model.bn.running_mean, agent.model.bn.running_var)  # the first task's, kept
    features = hand_forward(weights, gates, inputs, bn_training=False, running=statistics)
    logits = F.linear(features, weights[f"last.{task}.0.weight"], weights[f"last.{task}.0.bias"])
    regularizer = sum((g * (1 - u)).sum() for g, u in zip(gates, used)) / sum((1 - u).sum() for u in used)
    loss = F.cross_entropy(logits, targets) + LAMB * regularizer
    names = list(weights)
    gradients = torch.autograd.grad(loss, [weights[name] for name in names] + embeddings, allow_unused=True)
    grad = dict(zip(names, gradients[:len(names)]))
    free1, free2 = 1 - used[0], 1 - used[1]
    factors = {"conv1.weight": free1.view(-1, 1, 1, 1), "conv1.bias": free1,
               "conv2.weight": 1 - torch.minimum(used[1].view(-1, 1, 1, 1), used[0].view(1, -1, 1, 1)),
               "bn.weight": free2, "bn.bias": free2}
    scaled = {name: g * factors.get(name, 1.0) for name, g in grad.items() if g is not None}
    compensated = [g * SMAX / s * (torch.cosh(torch.clamp(s * e, -50, 50)) + 1) / (torch.cosh(e) + 1)
                   for g, e in zip(gradients[len(names):], embeddings)]
    norm = torch.cat([g.flatten() for g in list(scaled.values()) + compensated]).norm()
    assert norm < 10000  # the published clipping leaves this step alone
    after = {name: weights[name].detach() - LR * g for name, g in scaled.items()}
    embeddings_after = [torch.clamp(e.detach() - LR_EMBEDDING * g, -6, 6) for e, g in zip(embeddings, compensated)]
    return after, embeddings_after


def test_plain_sgd_step_is_the_published_rule():
    """Task 2's step at sample 16 of 40 of an epoch, with task 1 using every unit partly."""
    agent = conv_agent(HAT, optimizer="SGD", momentum=0.0, lr=LR)
    agent.learn_task("1", conv_loader(conv_task("1")))
    partly_used(agent)
    inputs, targets, tasks = next(iter(conv_loader(conv_task("2", seed=1))))
    begin(agent, "2", epoch_samples=40, position=16)
    s = 1 / SMAX + (SMAX - 1 / SMAX) * 16 / 40
    expected, expected_embeddings = published_step(agent, "2", s, inputs, targets)
    agent.observe(inputs, targets, tasks)
    assert agent.s == pytest.approx(s)
    parameters = dict(agent.model.named_parameters())
    for name, value in expected.items():
        assert torch.allclose(parameters[name], value, rtol=1e-5, atol=1e-7), name
    for embedding, value in zip(agent.embeddings["2"], expected_embeddings):
        assert torch.allclose(embedding, value, rtol=1e-5, atol=1e-6)
    assert agent.position == 24


def test_attention_regularizer_is_the_gates_share_of_the_units_left_free():
    agent = conv_agent(HAT)
    agent.learn_task("1", conv_loader(conv_task("1")))
    partly_used(agent)
    begin(agent, "2", epoch_samples=32)
    agent.gates = [torch.rand(len(e)) for e in agent.embeddings["2"]]
    used = [torch.sigmoid(SMAX * e) for e in agent.embeddings["1"]]
    expected = LAMB * sum(float((g * (1 - u)).sum()) for g, u in zip(agent.gates, used)) / sum(
        float((1 - u).sum()) for u in used)
    assert float(agent.regularization()["attention"]) == pytest.approx(expected, rel=1e-6)


OPTIMIZERS = [{"optimizer": "Adam", "lr": 0.01}, {"optimizer": "SGD", "momentum": 0.9, "lr": 0.05},
              {"optimizer": "SGD", "momentum": 0.0, "weight_decay": 0.05, "lr": 0.05},
              {"optimizer": "Adam", "weight_decay": 0.05, "lr": 0.01}]
OPTIMIZER_IDS = ["Adam", "SGD-momentum", "SGD-weight-decay", "Adam-weight-decay"]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_each_step_is_the_optimizers_scaled_by_what_earlier_tasks_leave_free(optimizer):
    """Whatever the optimizer does to a weight, the change kept is that times ``1 − min(a_<t[i], a_<t[j])``."""
    agent = conv_agent(HAT, **optimizer)
    agent.learn_task("1", conv_loader(conv_task("1")))
    partly_used(agent)
    begin(agent, "2", epoch_samples=32)
    optimizer_step = agent.optimizer.step
    for inputs, targets, tasks in conv_loader(conv_task("2", seed=1)):
        before = [p.detach().clone() for p, _ in agent.scaled]
        stepped = []
        agent.optimizer.step = lambda: (optimizer_step(), stepped.extend(p.detach().clone() for p, _ in agent.scaled))
        agent.observe(inputs, targets, tasks)
        for (parameter, factor), start, moved in zip(agent.scaled, before, stepped):
            assert not torch.equal(moved, start)
            assert torch.allclose(parameter, start + factor * (moved - start), rtol=1e-6, atol=1e-9)


def probe_logits(agent, task, inputs):
    with torch.no_grad():
        return agent.network_logits(agent.task_network(task), task, inputs)


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_earlier_tasks_outputs_are_kept_where_fine_tuning_changes_them(optimizer):
    """Three tasks of three epochs, on the same images with other labels; task 1's logits through its binary
    gates."""
    probe = conv_task("9", seed=9).transform(conv_task("9", seed=9).images)
    outputs = {}
    for cls in (HAT, NormalNN):
        agent = conv_agent(cls, schedule=[3], **optimizer)
        agent.learn_task("1", conv_loader(conv_task("1", channel=0)))
        before = probe_logits(agent, "1", probe)
        agent.learn_task("2", conv_loader(conv_task("2", channel=1)))
        agent.learn_task("3", conv_loader(conv_task("3", channel=2)))
        outputs[cls] = (probe_logits(agent, "1", probe) - before).abs().max() / before.abs().max()
    assert outputs[HAT] < 1e-5 and outputs[NormalNN] > 0.05


def test_compile_compiles_its_gated_forward_pass_not_its_step(recorded_graphs, caplog):
    """HAT's step anneals s in Python (its capture obstacle): ``--compile`` compiles the gated forward pass only, and
    says so; the task is learnt with the gates multiplying the compiled layers' outputs."""
    with caplog.at_level(logging.INFO, logger="agents.default"):
        agent = conv_agent(HAT, compile=True)
    assert [record.getMessage() for record in caplog.records if record.name == "agents.default"] == [
        f"--compile: HAT's step {HAT.capture_obstacle}: its forward pass is compiled, not its whole step"]
    agent.learn_task("1", conv_loader(conv_task("1", channel=0)))
    compiled = operations(recorded_graphs)
    assert {"conv2d", "mul"} <= compiled and not {"lerp_", "addcdiv_", "cross_entropy"} & compiled


def test_evaluation_uses_the_binary_gates():
    agent = conv_agent(HAT)
    agent.learn_task("1", conv_loader(conv_task("1")))
    agent.learn_task("2", conv_loader(conv_task("2", seed=1)))
    inputs = conv_task("9", seed=9).transform(conv_task("9", seed=9).images)
    model = agent.model
    weights = {name: p.detach() for name, p in model.named_parameters()}
    gates = [torch.sigmoid(SMAX * e) for e in agent.embeddings["1"]]
    features = hand_forward(weights, gates, inputs, bn_training=False,
                            running=(model.bn.running_mean, model.bn.running_var))
    expected = F.linear(features, weights["last.1.0.weight"], weights["last.1.0.bias"])
    assert torch.allclose(probe_logits(agent, "1", inputs), expected, atol=1e-5)
    assert not torch.allclose(probe_logits(agent, "2", inputs), F.linear(
        features, weights["last.2.0.weight"], weights["last.2.0.bias"]), atol=1e-3)  # task 2: its own gates


def test_gates_are_learnt_from_the_data_and_the_regularizer():
    """The same initial embeddings trained (Adam for the weights, the default embedding step) on data told apart by
    another channel, or without the regularizer, end up using other units, and not those of their initial signs:
    units whose embedding starts negative are turned on, which only the data does (the regularizer only lowers
    gates)."""
    generator = torch.Generator().manual_seed(5)
    initial = [torch.randn(8, generator=generator), torch.randn(6, generator=generator)]
    used = {}
    for name, lamb, channel in (("channel 0", LAMB, 0), ("channel 1", LAMB, 1), ("channel 2", LAMB, 2),
                                ("channel 0 without the regularizer", 0.0, 0)):
        agent = conv_agent(HAT, schedule=[10], optimizer="Adam", lr=0.01, hat_lamb=lamb)
        agent.embeddings["1"] = [e.clone() for e in initial]
        agent.learn_task("1", conv_loader(conv_task("1", channel=channel)))
        assert agent.evaluate(conv_loader(conv_task("1", seed=3, channel=channel))) > 90
        used[name] = torch.cat([torch.sigmoid(SMAX * e) > 0.5 for e in agent.embeddings["1"]])
    signs = torch.cat(initial) > 0
    by_data = [tuple(used[f"channel {c}"].tolist()) for c in range(3)]
    assert len(set(by_data)) == 3 and tuple(signs.tolist()) not in by_data
    assert int(used["channel 0 without the regularizer"].sum()) >= 2 * int(used["channel 0"].sum())
    assert int((used["channel 0 without the regularizer"] & ~signs).sum()) >= 3


def test_units_added_and_model_size():
    agent = conv_agent(HAT)
    agent.learn_task("1", conv_loader(conv_task("1")))
    agent.learn_task("2", conv_loader(conv_task("2", seed=1)))
    agent.embeddings["1"] = [torch.tensor([1.0, -1, 1, -1, 1, -1, -1, -1]), torch.tensor([1.0, 1, -1, -1, -1, -1])]
    agent.embeddings["2"] = [torch.tensor([1.0, 1, 1, -1, -1, -1, -1, -1]), torch.tensor([-1.0, -1, 1, -1, -1, 1])]
    assert agent.units_added() == {0: [3, 2], 1: [1, 2]}
    assert agent.results_keys() == {"hat_units_used": [4, 4]}
    parameters = sum(p.numel() for p in agent.model.parameters())
    assert agent.model_size_mb() == pytest.approx(4 * (parameters + 2 * (8 + 6)) / 1e6)


def test_on_vgg16_bn_later_tasks_leave_earlier_tasks_logits_and_batchnorm_statistics(narrow_vgg):
    """VGG16-BN (8 channels a layer) under SGD with momentum and weight decay: task 1's logits through its binary gates
    move by a small fraction of fine-tuning's, and the BatchNorm statistics stay the first task's."""
    probe = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    change = {}
    for cls in (HAT, NormalNN):
        torch.manual_seed(0)
        network = build_model(*VGG)
        network.add_heads({task: 2 for task in ("1", "2")})
        agent = cls(network, cls.Settings(schedule=[2], print_freq=1000, optimizer="SGD", lr=0.05,
                                          weight_decay=0.01))
        agent.learn_task("1", image_loader("1"))
        before = evaluated_logits(agent, "1", probe)
        buffers = {name: b.clone() for name, b in agent.model.named_buffers()}
        agent.learn_task("2", image_loader("2"))
        change[cls] = float((evaluated_logits(agent, "1", probe) - before).abs().max() / before.abs().max())
        if cls is HAT:
            assert all(torch.equal(b, buffers[name]) for name, b in agent.model.named_buffers())
    assert change[HAT] < 1e-3 and change[NormalNN] > 0.05, change


def test_a_state_saved_in_a_task_continues_bit_identically():
    assert_state_saved_mid_task_continues_exactly(lambda: make_agent(schedule=[2], weight_decay=0.01),
                                                  loader=image_loader)


@pytest.mark.parametrize("flags, message", [
    (["--hat_smax", "0"], "--hat_smax must be positive, got 0.0"),
    (["--hat_lamb", "-1"], "--hat_lamb must be 0 or more (a negative weight rewards using more units), got -1.0"),
    (["--hat_lr_embedding", "0"], "--hat_lr_embedding must be positive, got 0.0"),
    (["--model_type", "customnet_SVD", "--model_name", "Net_SVD"],
     f"HAT runs on a dense network, not --model_type customnet_SVD --model_name Net_SVD: use {DENSE_CHOICES}"),
])
def test_bad_values_are_one_line_errors(workdir, capsys, flags, message):
    assert driver_error(capsys, *DRIVER, *flags) == message


def test_killed_in_a_task_and_between_tasks_it_resumes_exactly_and_its_saved_model_evaluates(
        tmp_path, cifar10_root, capsys, monkeypatch):
    """Two tasks of two epochs, a checkpoint after each epoch and task: SIGKILLed after task 1's first epoch and
    between the tasks; then ``--loadmodel`` of the saved model (weights and embeddings) gives the run's accuracies."""
    flags = ["--gpuid", "-1", "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--schedule", "2",
             "--batch_size", "10", "--repeat", "1", "--print_freq", "1000", "--exp_name", "hat",
             "--checkpoint_interval", "0", *DRIVER]
    interrupted = assert_killed_run_resumes_exactly(tmp_path, flags, "hat", kills=[1, 3])
    record = assert_saved_model_evaluates_as_trained(capsys, monkeypatch, interrupted, flags, "hat")
    assert len(record["channels"]) == 2 and len(record["hat_units_used"]) == 5


def test_the_evaluated_weights_hold_no_subnormal_float():
    """A gate σ(s·e) of an unused unit can be subnormal; the evaluated (and exported) network's gated weights hold
    none, whatever the process's floating-point settings (none is set here: an agent changes none)."""
    agent = conv_agent(HAT)
    agent.learn_task("1", conv_loader(conv_task("1")))
    agent.embeddings["1"][0][0] = -0.22  # σ(400 · −0.22) ≈ 6e-39: subnormal
    assert float(torch.tensor(1e-39) * 1.0) > 0
    assert 0 < float(torch.sigmoid(SMAX * agent.embeddings["1"][0][0])) < 1.2e-38
    convolutions = [m for m in agent.task_network("1").modules() if isinstance(m, torch.nn.Conv2d)]
    for parameter in (p for convolution in convolutions for p in convolution.parameters()):
        assert not bool(((parameter != 0) & (parameter.abs() < 1.2e-38)).any())
    assert not bool(convolutions[0].weight[0].any())
