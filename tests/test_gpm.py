"""GPM's rules, each against a computation written out here: the representation matrix of a convolution's patches,
the bases chosen by a direct SVD and the published thresholds, the projected step (under plain SGD: the published
rule), steps orthogonal to the memory under other optimizers (on VGG16-BN too), its outputs (bases added, memory,
model size), its errors, and a run killed and resumed, then evaluated from its saved model."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agents.gpm import GPM, GPMSettings, convolutions, new_bases, patch_gram
from helpers import (DENSE_CHOICES, assert_killed_run_resumes_exactly, assert_saved_model_evaluates_as_trained,
                     assert_state_saved_mid_task_continues_exactly, driver_error)
from models import build_model
from tiny_convnet import conv_agent, conv_loader, conv_task, image_loader

THRESHOLD, INCREMENT = 0.97, 0.003
NET = ("customnet", "Net")
VGG = ("vgg_16_bn", "vgg16_bn_cifar100")
DRIVER = ["--agent_type", "gpm", "--agent_name", "GPM", "--model_type", "customnet", "--model_name", "Net"]


def make_agent(model=NET, tasks=("1", "2", "3"), **settings) -> GPM:
    """GPM on a dense network of the project with a head per task, built from seed 0; one epoch a task unless told."""
    torch.manual_seed(0)
    network = build_model(*model)
    network.add_heads({task: 2 for task in tasks})
    return GPM(network, GPMSettings(**{"schedule": [1], "print_freq": 1000, "gpm_examples": 12, **settings}))


def published_patches(inputs, kernel, stride=1, padding=0):
    """``get_representation_matrix``'s matrix: a column per example and output position, the zero-padded input
    patch there (``act[k, :, st·i:st·i+k, st·j:st·j+k].reshape(-1)``)."""
    padded = np.pad(inputs.double().numpy(), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    side = (padded.shape[2] - kernel) // stride + 1
    columns = [padded[k, :, stride * i:stride * i + kernel, stride * j:stride * j + kernel].reshape(-1)
               for k in range(len(padded)) for i in range(side) for j in range(side)]
    return np.stack(columns, 1)


def published_update(matrix, memory, threshold):
    """``update_GPM`` for one layer: the bases it appends (``memory`` None: the first task's rule)."""
    total = (np.linalg.svd(matrix, compute_uv=False) ** 2).sum()
    if memory is None:
        U, S, _ = np.linalg.svd(matrix, full_matrices=False)
        return U[:, :np.sum(np.cumsum(S ** 2 / total) < threshold)]
    residual = matrix - memory @ memory.T @ matrix
    U, S, _ = np.linalg.svd(residual, full_matrices=False)
    accumulated, r = (total - (S ** 2).sum()) / total, 0
    for value in S ** 2 / total:
        if accumulated >= threshold:
            break
        accumulated += value
        r += 1
    return U[:, :r]


def projector(bases):
    bases = torch.as_tensor(np.asarray(bases), dtype=torch.float64)
    return bases @ bases.T


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_patch_gram_is_the_published_representation_matrix_times_its_transpose(stride, padding):
    inputs = torch.randn(3, 4, 7, 7)
    convolution = nn.Conv2d(4, 5, 3, stride=stride, padding=padding)
    matrix = published_patches(inputs, 3, stride, padding)
    assert torch.allclose(patch_gram(inputs, convolution), torch.from_numpy(matrix @ matrix.T), rtol=1e-10)


def spectrum_matrix(seed, rows=12, columns=200):
    """A matrix whose singular values decay geometrically (the energy criterion has something to choose)."""
    generator = np.random.default_rng(seed)
    U, _ = np.linalg.qr(generator.standard_normal((rows, rows)))
    V, _ = np.linalg.qr(generator.standard_normal((columns, rows)))
    return U @ np.diag(0.6 ** np.arange(rows)) @ V.T + 1e-3 * generator.standard_normal((rows, columns))


def test_bases_are_those_of_a_direct_svd_at_the_published_thresholds():
    first, second = spectrum_matrix(0), spectrum_matrix(1)
    expected = published_update(first, None, THRESHOLD)
    chosen = new_bases(torch.from_numpy(first @ first.T), None, THRESHOLD)
    assert chosen.shape[1] == expected.shape[1] == 3
    assert torch.allclose(projector(chosen), projector(expected), atol=1e-8)

    memory = chosen.float()
    expected_added = published_update(second, memory.double().numpy(), THRESHOLD + INCREMENT)
    added = new_bases(torch.from_numpy(second @ second.T), memory, THRESHOLD + INCREMENT)
    assert added.shape[1] == expected_added.shape[1] > 0
    assert torch.allclose(projector(added), projector(expected_added), atol=1e-5)
    assert float((memory.double().T @ added).abs().max()) < 1e-6


def test_a_direction_the_inputs_lack_never_becomes_a_basis():
    """Past a threshold of 1 (the 12th task of 0.97 + 0.003·t) every direction with energy is kept, no other. (At
    exactly 1 the first task's rule keeps one less: the last direction's cumulative energy is 1, not below it, in
    exact arithmetic; rounding decides it either way on a given CPU.)"""
    matrix = spectrum_matrix(2)[:, :3]  # rank 3 in 12 dimensions
    assert new_bases(torch.from_numpy(matrix @ matrix.T), None, 1.03).shape[1] == 3
    memory = new_bases(torch.from_numpy(matrix @ matrix.T), None, 0.5).float()
    assert new_bases(torch.from_numpy(matrix @ matrix.T), memory, 1.03).shape[1] == 3 - memory.shape[1]


def test_the_memory_is_built_from_the_tasks_training_examples_in_eval_mode():
    agent = conv_agent(GPM, gpm_examples=5)
    agent.learn_task("1", conv_loader(conv_task("1")))
    loader = conv_loader(conv_task("2", seed=1))
    memory = [bases.clone() for bases in agent.memory]
    torch.manual_seed(7)
    agent.consolidate("2", loader)
    torch.manual_seed(7)
    inputs = loader.samples(torch.randperm(loader.num_samples)[:5])[0]
    model = agent.model
    with torch.no_grad():
        hidden = F.relu(model.conv1(inputs))  # conv2's input
    for index, (layer_inputs, padding) in enumerate(((inputs, 0), (hidden, 1))):
        expected = published_update(published_patches(layer_inputs, 3, padding=padding),
                                    memory[index].double().numpy(), THRESHOLD + INCREMENT)
        added = agent.memory[index][:, memory[index].shape[1]:]
        assert added.shape[1] == expected.shape[1] == agent.bases_added[1][index]
        assert torch.allclose(projector(added.double()), projector(expected), atol=1e-5)


def test_plain_sgd_step_is_the_published_projection():
    agent = conv_agent(GPM, optimizer="SGD", momentum=0.0, lr=0.05)
    agent.learn_task("1", conv_loader(conv_task("1")))
    inputs, targets, tasks = next(iter(conv_loader(conv_task("2", seed=1))))
    agent.training_heads = ["2"]
    agent.begin_task("2")
    model = agent.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = F.cross_entropy(model(inputs, "2"), targets)
    gradients = dict(zip(before, torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)))
    agent.observe(inputs, targets, tasks)
    for name, p in model.named_parameters():
        gradient = gradients[name]
        if name in ("conv1.weight", "conv2.weight"):
            M = agent.memory[0 if name == "conv1.weight" else 1]
            flat = gradient.reshape(len(gradient), -1)
            gradient = (flat - flat @ M @ M.T).view(gradient.shape)
            assert float((gradient.reshape(len(gradient), -1) @ M).abs().max()) < 1e-6
        elif name in ("conv1.bias", "bn.weight", "bn.bias") or gradient is None:
            assert torch.equal(p, before[name]), name  # 1-D parameters learn with the first task only
            continue
        assert torch.allclose(p, before[name] - 0.05 * gradient, rtol=1e-5, atol=1e-7), name


OPTIMIZERS = [{"optimizer": "Adam", "lr": 0.01}, {"optimizer": "SGD", "momentum": 0.9, "lr": 0.05},
              {"optimizer": "SGD", "momentum": 0.0, "weight_decay": 0.05, "lr": 0.05},
              {"optimizer": "Adam", "weight_decay": 0.05, "lr": 0.01}]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=["Adam", "SGD-momentum", "SGD-weight-decay",
                                                       "Adam-weight-decay"])
def test_kernels_move_only_orthogonally_to_the_memory_under_each_optimizer(optimizer):
    agent = conv_agent(GPM, schedule=[3], **optimizer)
    agent.learn_task("1", conv_loader(conv_task("1", channel=0)))
    memory = [bases.clone() for bases in agent.memory]
    before = {name: p.detach().clone() for name, p in agent.model.named_parameters()}
    agent.learn_task("2", conv_loader(conv_task("2", channel=1)))
    for name, M in (("conv1.weight", memory[0]), ("conv2.weight", memory[1])):
        change = (agent.model.get_parameter(name) - before[name]).detach().reshape(len(before[name]), -1)
        assert M.shape[1] > 0 and float(change.norm()) > 0
        assert float((change @ M).norm()) <= 1e-5 * float(change.norm()), name
    for name in ("conv1.bias", "bn.weight", "bn.bias"):
        assert torch.equal(agent.model.get_parameter(name), before[name])


def test_bases_added_memory_and_model_size():
    agent = conv_agent(GPM)
    agent.learn_task("1", conv_loader(conv_task("1")))
    agent.learn_task("2", conv_loader(conv_task("2", seed=1)))
    added = agent.units_added()
    assert list(added) == [0, 1]
    bases = [sum(task[layer] for task in added.values()) for layer in range(2)]
    assert bases == [m.shape[1] for m in agent.memory]
    assert agent.results_keys() == {"gpm_bases": bases,
                                    "gpm_memory_mb": pytest.approx(4 * (27 * bases[0] + 72 * bases[1]) / 1e6)}
    assert agent.model_size_mb() == pytest.approx(4 * sum(p.numel() for p in agent.model.parameters()) / 1e6)


def test_on_vgg16_bn_kernels_move_orthogonally_and_batchnorm_stays_the_first_tasks(narrow_vgg):
    """VGG16-BN (8 channels a layer) under SGD with momentum and weight decay."""
    agent = make_agent(VGG, schedule=[2], optimizer="SGD", lr=0.05, weight_decay=0.01)
    agent.learn_task("1", image_loader("1"))
    memory = [bases.clone() for bases in agent.memory]
    before = {name: p.detach().clone() for name, p in agent.model.named_parameters()}
    buffers = {name: b.clone() for name, b in agent.model.named_buffers()}
    agent.learn_task("2", image_loader("2"))
    for convolution, M in zip(convolutions(agent.model), memory):
        name = next(n for n, p in agent.model.named_parameters() if p is convolution.weight)
        change = (convolution.weight - before[name]).detach().reshape(len(convolution.weight), -1)
        # the weights are stored in float32: each step rounds them by ~2^-24 of their size, in every direction
        rounding = 1e-6 * float(before[name].norm())
        assert float((change @ M).norm()) <= 1e-5 * float(change.norm()) + rounding, name
    for name, p in agent.model.named_parameters():
        if p.dim() == 1 and not name.startswith("last."):
            assert torch.equal(p, before[name]), name
    assert all(torch.equal(b, buffers[name]) for name, b in agent.model.named_buffers())


def test_a_state_saved_in_a_task_continues_bit_identically():
    assert_state_saved_mid_task_continues_exactly(lambda: make_agent(schedule=[2], weight_decay=0.01),
                                                  loader=image_loader)


@pytest.mark.parametrize("flags, message", [
    (["--gpm_threshold", "0"], "--gpm_threshold must lie in (0, 1], got 0.0"),
    (["--gpm_threshold", "1.01"], "--gpm_threshold must lie in (0, 1], got 1.01"),
    (["--gpm_threshold_increment", "-0.1"], "--gpm_threshold_increment must be 0 or more, got -0.1"),
    (["--gpm_examples", "0"], "--gpm_examples must be positive, got 0"),
    (["--model_type", "vgg_16_bn", "--model_name", "vgg16_bn_cifar100_SVD"],
     "GPM runs on a dense network, not --model_type vgg_16_bn --model_name vgg16_bn_cifar100_SVD: use "
     f"{DENSE_CHOICES}"),
])
def test_bad_values_are_one_line_errors(workdir, capsys, flags, message):
    assert driver_error(capsys, *DRIVER, *flags) == message


def test_killed_in_a_task_and_between_tasks_it_resumes_exactly_and_its_saved_model_evaluates(
        tmp_path, cifar10_root, capsys, monkeypatch):
    """Two tasks of two epochs, a checkpoint after each epoch and task: SIGKILLed after task 1's first epoch and
    between the tasks (after the memory is built); then ``--loadmodel`` of the saved model gives the run's
    accuracies."""
    flags = ["--gpuid", "-1", "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--schedule", "2",
             "--batch_size", "10", "--repeat", "1", "--print_freq", "1000", "--exp_name", "gpm",
             "--gpm_examples", "20", "--checkpoint_interval", "0", *DRIVER]
    interrupted = assert_killed_run_resumes_exactly(tmp_path, flags, "gpm", kills=[1, 3])
    record = assert_saved_model_evaluates_as_trained(capsys, monkeypatch, interrupted, flags, "gpm")
    assert len(record["channels"]) == 2 and len(record["gpm_bases"]) == 5 and record["gpm_memory_mb"] > 0
