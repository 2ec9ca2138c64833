"""A task's plain network (``models.deployable``): each SVD layer as one dense or two thin convolutions, chosen for
the device it runs on (on the CPU by their multiply-adds, on CUDA always one), BatchNorm folded in, the same logits
as the factorized model, and what evaluation runs."""
import pytest
import torch
from torch import nn

from agents.SVDNet import SVDNet, SVDNetSettings
from agents.batchnorm import batchnorm_layers, use_batchnorm_statistics
from helpers import batches, svd_agent
from models import build_model
from models.deployable import count_multiply_adds, task_network
from models.svd_conv import SVD_Conv2d
from simulated_cuda import SimulatedCuda

NET_POSITIONS = [30 * 30, 28 * 28, 12 * 12, 10 * 10, 4 * 4]
"""Output positions of Net_SVD's five convolutions on 32×32 inputs (3×3, 3×3, pool, 3×3, 3×3, pool, 2×2)."""
NET_SHAPES = [(27, 64), (576, 64), (576, 128), (1152, 128), (512, 256)]
"""(in·k·k, out) of Net_SVD's convolutions."""
VGG_POSITIONS = [32 * 32] * 2 + [16 * 16] * 2 + [8 * 8] * 3 + [4 * 4] * 3 + [2 * 2] * 3


def expected_two_convolutions(fan_in, out, k):
    """Two convolutions when they cost at most 3/4 of the dense one: ``4·k·(in·k·k + out) ≤ 3·out·in·k·k``."""
    return 0 < k and 4 * k * (fan_in + out) <= 3 * out * fan_in


def formula_multiply_adds(shapes, ranks, positions):
    """Σ_l positions_l · (k·(in·k·k + out) with two convolutions, else out·in·k·k)."""
    return sum(position * (k * (fan_in + out) if expected_two_convolutions(fan_in, out, k) else out * fan_in)
               for (fan_in, out), k, position in zip(shapes, ranks, positions))


def relative_close(actual, expected, tolerance=1e-5):
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))


def assert_plain(network):
    assert all(type(module).__module__.startswith("torch.nn.") for module in network.modules())


@pytest.mark.parametrize("k, two", [(0, False), (1, True), (3, True), (4, False), (5, False), (10, False)])
def test_two_convolutions_exactly_when_they_cost_at_most_three_quarters_of_the_dense_multiply_adds(k, two):
    torch.manual_seed(0)
    # in·k·k = 36, out = 6: one convolution 216 multiply-adds a position, two 42·k (3/4 of 216 = 162)
    layer = SVD_Conv2d(4, 6, 3, stride=2, padding=1, bias=True, rank=10).double()
    assert expected_two_convolutions(36, 6, k) == two
    network = task_network([layer], [k], nn.Identity())
    form = network[0]
    assert isinstance(form, nn.Sequential) == two and len(network) == 3
    if two:
        filters, mixing = form
        assert (filters.kernel_size, filters.stride, filters.padding) == ((3, 3), (2, 2), (1, 1))
        assert filters.out_channels == k and filters.bias is None
        assert (mixing.in_channels, mixing.out_channels, mixing.kernel_size) == (k, 6, (1, 1))
    x = torch.randn(3, 4, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(network(x), layer(x, rank=k).flatten(1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ranks", [[5, 11, 12, 11, 8], [18, 57, 104, 115, 170], [3, 40, 80, 1, 0]])
def test_multiply_adds_counted_equal_the_formula(ranks):
    model = build_model("customnet_SVD", "Net_SVD", rank=[max(r, 1) for r in ranks])
    model.add_heads({"1": 7})
    network = task_network(model.feature_layers(), ranks, model.last["1"])
    head = 1024 * 7
    assert count_multiply_adds(network, (3, 32, 32)) == formula_multiply_adds(NET_SHAPES, ranks, NET_POSITIONS) + head
    dense = build_model("customnet", "Net")
    dense.add_heads({"1": 7})
    plain = task_network(dense.feature_layers(), None, dense.last["1"])
    dense_formula = sum(out * fan_in * position for (fan_in, out), position in zip(NET_SHAPES, NET_POSITIONS))
    assert count_multiply_adds(plain, (3, 32, 32)) == dense_formula + head


def pairs_of_convolutions(network) -> int:
    """How many layers of a task's network are two convolutions."""
    return sum(isinstance(module, nn.Sequential) and all(isinstance(part, nn.Conv2d) for part in module)
               for module in network)


PRUNED = [5, 11, 12, 11, 8]
"""The published CIFAR-100 sparse_wt0.4 checkpoint's components after its first task (0.15× the dense
multiply-adds): on the CPU every layer is two convolutions."""


def test_on_cuda_every_layer_is_one_composed_kernel_with_the_cpus_logits():
    torch.manual_seed(0)
    model = build_model("customnet_SVD", "Net_SVD")
    model.add_heads({"1": 7})
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    on_cpu = task_network(model.feature_layers(), PRUNED, model.last["1"])
    assert pairs_of_convolutions(on_cpu) == 5
    with SimulatedCuda(), torch.no_grad():
        model.to("cuda")
        on_gpu = task_network(model.feature_layers(), PRUNED, model.last["1"])
        assert all(parameter.device.type == "cuda" for parameter in on_gpu.parameters())
        convolutions = [module for module in on_gpu.modules() if isinstance(module, nn.Conv2d)]
        assert len(convolutions) == 5 and pairs_of_convolutions(on_gpu) == 0
        assert [conv.weight.shape[:2] for conv in convolutions] == [(64, 3), (64, 64), (128, 64), (128, 128),
                                                                   (256, 128)]
        logits = on_gpu(x.to("cuda"))
        macs = count_multiply_adds(on_gpu, (3, 32, 32))
    with torch.no_grad():
        relative_close(logits.as_subclass(torch.Tensor), on_cpu(x))
    dense = sum(out * fan_in * position for (fan_in, out), position in zip(NET_SHAPES, NET_POSITIONS))
    assert macs == dense + 1024 * 7  # the dense count: one convolution a layer


def test_the_cpus_form_can_be_asked_for_on_another_device():
    """What the benchmark's rows 4d-4e measure: either form built on one device."""
    torch.manual_seed(0)
    model = build_model("customnet_SVD", "Net_SVD")
    model.add_heads({"1": 7})
    composed = task_network(model.feature_layers(), PRUNED, model.last["1"], form_device="cuda")
    assert pairs_of_convolutions(composed) == 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        relative_close(composed(x), task_network(model.feature_layers(), PRUNED, model.last["1"])(x))


def random_statistics(model, seed):
    """BatchNorm running statistics of every layer of ``model``, drawn at random (positive variances)."""
    generator = torch.Generator().manual_seed(seed)
    return [{"running_mean": torch.randn(bn.num_features, generator=generator),
             "running_var": torch.rand(bn.num_features, generator=generator) + 0.5,
             "num_batches_tracked": torch.tensor(1)} for bn in batchnorm_layers(model)]


def test_vgg_task_network_folds_each_task_batchnorm_statistics():
    torch.manual_seed(0)
    model = build_model("vgg_16_bn", "vgg16_bn_cifar100_SVD")
    model.add_heads({"1": 3, "2": 3})
    for bn in batchnorm_layers(model):
        nn.init.normal_(bn.weight)
        nn.init.normal_(bn.bias)
    agent = SVDNet(model, SVDNetSettings(save_running_stats=True))
    first = [layer.rank // 3 for layer in agent.layers]
    second = [layer.rank // 2 for layer in agent.layers]
    agent.load_continual_state({"task_identifiers": {0: first, 1: second}, "task_name_count": {"1": 0, "2": 1},
                                "chann_used": {0: first, 1: [b - a for a, b in zip(first, second)]}})
    agent.load_running_stats({"1": random_statistics(model, 1), "2": random_statistics(model, 2)}, "test")
    x = torch.randn(4, 3, 32, 32)
    shapes = [(layer.fan_in, layer.output_channel) for layer in agent.layers]
    for task in ("1", "2"):
        network = agent.task_network(task)
        assert_plain(network)
        assert not any(isinstance(module, nn.BatchNorm2d) for module in network.modules())
        ranks = agent.task_ranks(task)
        assert count_multiply_adds(network, (3, 32, 32)) == (formula_multiply_adds(shapes, ranks, VGG_POSITIONS)
                                                             + 512 * 32 + 32 * 3)
        use_batchnorm_statistics(agent.model, agent.running_stats[task])
        agent.model.eval()
        with torch.no_grad():
            relative_close(network(x), agent.model(x, task, ranks))


def test_task_networks_give_the_factorized_logits_for_every_task_and_evaluation_runs_them():
    agent = svd_agent(grow_network=True, energy_sv=0.05)
    for task in ("1", "2", "3"):
        agent.learn_task(task, batches(task))
    agent.model.eval()
    built = []
    build = agent.task_network
    agent.task_network = lambda task: built.append(task) or build(task)
    mixed = [(x, y, [task] * len(y)) for task in ("1", "2", "3") for x, y, _ in batches(task, seed=7)]
    correct = 0
    for task in ("1", "2", "3"):
        network = build(task)
        assert_plain(network)
        for inputs, targets, _ in batches(task, seed=7):
            with torch.no_grad():
                factorized = agent.model(inputs, task, agent.task_ranks(task))
                relative_close(network(inputs), factorized)
            correct += int((factorized.argmax(1) == targets).sum())
    random_state = torch.get_rng_state()
    assert agent.evaluate(mixed) == pytest.approx(100.0 * correct / sum(len(y) for _, y, _ in mixed))
    assert built == ["1", "2", "3"]  # once per task and call, not per batch
    assert torch.equal(torch.get_rng_state(), random_state)  # evaluating leaves training's random draws alone
