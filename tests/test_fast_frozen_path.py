"""A later task's step costs what its own components cost: the frozen ones enter as constants, same loss, same step."""
import pytest
import torch

from agents.SVDNet import SVDNet, SVDNetSettings
from agents.regularizers import FrozenOrthogonality, SPARSITY_REGULARIZERS, norms, orthogonality
from models import build_model
from models.svd_conv import SVD_Conv2d


def double_layer(cin=4, cout=6, kernel=3, rank=10, seed=0):
    torch.manual_seed(seed)
    return SVD_Conv2d(cin, cout, kernel, rank=rank).double()


def plain_kernel(layer, rank=None):
    N, C, Sigma = layer.N, layer.C, layer.Sigma
    if rank is not None:
        N, C, Sigma = N[:, :rank], C[:rank], Sigma[:rank]
    return (N @ torch.diag(Sigma.abs()) @ C).view(layer.output_channel, layer.input_channel, layer.kernel_size,
                                                  layer.kernel_size)


def test_constant_prefix_kernel_equals_the_whole_composition():
    layer = double_layer()
    layer.set_constant_prefix(4)
    torch.testing.assert_close(layer.composed_weight(), plain_kernel(layer))
    torch.testing.assert_close(layer.constant_kernel, plain_kernel(layer, 4))


def test_prefixes_and_eval_mode_ignore_the_constant_prefix():
    layer = double_layer()
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    before = {rank: layer(x, rank=rank) for rank in (2, 4, 7, 10)}
    layer.eval()
    before_eval = layer(x)
    layer.set_constant_prefix(4)
    for rank, output in before.items():
        assert torch.equal(layer(x, rank=rank), output)
    assert torch.equal(layer(x), before_eval)
    layer.train()
    layer.set_constant_prefix(0)
    assert layer.constant_kernel is None


def test_constant_prefix_gradients_reach_only_the_other_components():
    k = 4
    x = torch.randn(3, 4, 7, 7, dtype=torch.float64)
    plain, fast = double_layer(), double_layer()
    fast.set_constant_prefix(k)
    for layer in (plain, fast):
        (layer(x) ** 2).sum().backward()
    torch.testing.assert_close(fast.N.grad[:, k:], plain.N.grad[:, k:])
    torch.testing.assert_close(fast.C.grad[k:], plain.C.grad[k:])
    torch.testing.assert_close(fast.Sigma.grad[k:], plain.Sigma.grad[k:])
    assert not fast.N.grad[:, :k].any() and not fast.C.grad[:k].any() and not fast.Sigma.grad[:k].any()


def test_set_components_clears_the_constant_prefix():
    layer = double_layer()
    layer.set_constant_prefix(4)
    layer.set_components(layer.N[:, :8], layer.C[:8], layer.Sigma[:8])
    assert layer.constant_prefix == 0 and layer.constant_kernel is None
    with pytest.raises(ValueError):
        layer.set_constant_prefix(9)


# factor shapes covering both Gram orientations and the tie, for N (out × r) and C (r × d)
@pytest.mark.parametrize("shape, components_on_rows", [
    ((6, 10), False), ((12, 10), False), ((10, 10), False),  # N: out < r, out > r, out = r
    ((10, 6), True), ((10, 15), True), ((10, 10), True),  # C: r > d, r < d, r = d
])
@pytest.mark.parametrize("k", [1, 4, 9])
def test_frozen_orthogonality_equals_the_plain_formula(shape, components_on_rows, k):
    torch.manual_seed(k)
    plain = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    fast = plain.detach().clone().requires_grad_()
    value = FrozenOrthogonality(fast, k, components_on_rows)(fast)
    expected = orthogonality(plain)
    torch.testing.assert_close(value, expected)
    value.backward()
    expected.backward()
    trainable = (slice(k, None),) if components_on_rows else (slice(None), slice(k, None))
    frozen = (slice(0, k),) if components_on_rows else (slice(None), slice(0, k))
    torch.testing.assert_close(fast.grad[trainable], plain.grad[trainable])
    assert not fast.grad[frozen].any()


@pytest.mark.parametrize("name", list(SPARSITY_REGULARIZERS))
def test_frozen_sparsity_equals_the_plain_formula(name):
    regularizer, k = SPARSITY_REGULARIZERS[name], 5
    torch.manual_seed(0)
    plain = torch.randn(12, dtype=torch.float64, requires_grad=True)
    fast = plain.detach().clone().requires_grad_()
    value = regularizer(fast[k:], norms(fast[:k].detach()))
    expected = regularizer(plain)
    torch.testing.assert_close(value, expected)
    value.backward()
    expected.backward()
    torch.testing.assert_close(fast.grad[k:], plain.grad[k:])
    assert not fast.grad[:k].any()


def batch(seed, n=8):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, 32, 32, generator=generator, dtype=torch.float64),
            torch.randint(0, 2, (n,), generator=generator), ["2"] * n)


def agent_after_one_task(**overrides):
    torch.manual_seed(0)
    model = build_model("customnet_SVD", "Net_SVD")
    model.add_heads({"1": 2, "2": 2})
    model.double()
    settings = SVDNetSettings(schedule=[1], print_freq=1000, sparse_wt=0.3, perp_wt=0.7, energy_sv=0.3, **overrides)
    agent = SVDNet(model, settings)  # energy_sv 0.3: every layer keeps a part of its rank
    x, y, _ = batch(1)
    agent.learn_task("1", [(x, y, ["1"] * len(y))])
    return agent


def plain_loss(agent, inputs, targets, tasks):
    """The CACL loss by its published formula: every component composed and regularized anew."""
    sparsity = sum(agent.sparsity(layer.Sigma) for layer in agent.layers)
    orth = sum(orthogonality(layer.N) + orthogonality(layer.C) for layer in agent.layers)
    return (agent.classification_loss(inputs, targets, tasks) + agent.settings.sparse_wt * sparsity
            + agent.settings.perp_wt * orth)


def test_later_task_loss_gradients_and_kernels_equal_the_plain_formula():
    agent = agent_after_one_task()
    prefix = agent.task_identifiers[0]
    assert all(0 < k < layer.rank for layer, k in zip(agent.layers, prefix))
    agent.begin_task("2")
    agent.model.train()
    for layer, k in zip(agent.layers, prefix):
        assert layer.constant_prefix == k
        torch.testing.assert_close(layer.composed_weight(), plain_kernel(layer))
    inputs, targets, tasks = batch(2)

    torch.manual_seed(7)  # the same dropout masks for both losses
    fast = agent.classification_loss(inputs, targets, tasks) + sum(agent.regularization().values())
    fast.backward()
    fast_grads = [(layer.N.grad.clone(), layer.C.grad.clone(), layer.Sigma.grad.clone()) for layer in agent.layers]
    agent.model.zero_grad(set_to_none=True)
    for layer in agent.layers:
        layer.set_constant_prefix(0)
    torch.manual_seed(7)
    expected = plain_loss(agent, inputs, targets, tasks)
    expected.backward()

    torch.testing.assert_close(fast, expected)
    for layer, k, (N, C, Sigma) in zip(agent.layers, prefix, fast_grads):
        torch.testing.assert_close(N[:, k:], layer.N.grad[:, k:])
        torch.testing.assert_close(C[k:], layer.C.grad[k:])
        torch.testing.assert_close(Sigma[k:], layer.Sigma.grad[k:])
        assert not N[:, :k].any() and not C[:k].any() and not Sigma[:k].any()


def test_first_task_loss_is_the_plain_formula():
    torch.manual_seed(0)
    model = build_model("customnet_SVD", "Net_SVD")
    model.add_heads({"2": 2})
    agent = SVDNet(model, SVDNetSettings(schedule=[1], sparse_wt=0.3, perp_wt=0.7))
    agent.begin_task("2")
    agent.model.train()
    inputs, targets, tasks = batch(3)
    inputs = inputs.float()
    torch.manual_seed(7)
    fast = agent.classification_loss(inputs, targets, tasks) + sum(agent.regularization().values())
    torch.manual_seed(7)
    torch.testing.assert_close(fast, plain_loss(agent, inputs, targets, tasks))


@pytest.mark.parametrize("overrides", [{}, {"weight_decay": 0.01}, {"optimizer": "SGD", "weight_decay": 0.01}])
def test_a_later_step_leaves_the_frozen_components_and_their_kernel_untouched(overrides):
    agent = agent_after_one_task(**overrides)
    prefix = agent.task_identifiers[0]
    frozen = [(layer.N[:, :k].clone(), layer.C[:k].clone(), layer.Sigma[:k].clone())
              for layer, k in zip(agent.layers, prefix)]
    trainable = [layer.Sigma[k:].clone() for layer, k in zip(agent.layers, prefix)]
    agent.begin_task("2")
    for step in range(2):
        agent.observe(*batch(10 + step))
    for layer, k, (N, C, Sigma), before in zip(agent.layers, prefix, frozen, trainable):
        assert torch.equal(layer.N[:, :k], N) and torch.equal(layer.C[:k], C) and torch.equal(layer.Sigma[:k], Sigma)
        assert torch.equal(layer.constant_kernel, layer.composed_weight(k))
    assert any(not torch.equal(layer.Sigma[k:], before) for layer, k, before in zip(agent.layers, prefix, trainable))
    agent.end_task("2")
    assert all(layer.constant_prefix == 0 and layer.constant_kernel is None for layer in agent.layers)

