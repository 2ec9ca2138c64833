"""The SVDNet agent: the CACL objective, freezing, prune-pack-refill, growth and zero forgetting."""
import pytest
import torch
import torch.nn.functional as F

from agents.SVDNet import SVDNet, SVDNetSettings
from agents.optim import make_optimizer
from agents.regularizers import hoyer, hoyer_square, orthogonality
from helpers import batches, dense_agent
from helpers import svd_agent as make_agent
from models import build_model
from utils.errors import UserError


def logits_of(agent, task, inputs):
    """The agent's evaluation path (its task network, autocast and memory format included) on one batch."""
    with torch.no_grad():
        return agent.network_logits(agent.task_network(task), task, inputs).float()


@pytest.mark.parametrize("overrides", [{}, {"weight_decay": 0.01}, {"optimizer": "SGD", "weight_decay": 0.01},
                                       {"optimizer": "amsgrad", "grow_network": True},
                                       {"grow_network": True, "channels_last": True},
                                       {"grow_network": True, "amp": True},
                                       {"grow_network": True, "compile": True},
                                       {"grow_network": True, "channels_last": True, "amp": True}])
def test_earlier_task_logits_unchanged_after_later_task(overrides, eager_compile):
    agent = make_agent(**overrides)
    probe = torch.randn(6, 3, 32, 32)
    agent.learn_task("1", batches("1"))
    before = logits_of(agent, "1", probe)
    agent.learn_task("2", batches("2"))
    agent.learn_task("3", batches("3"))
    assert torch.equal(logits_of(agent, "1", probe), before)


def test_frozen_components_and_earlier_heads_bit_identical_after_later_task():
    agent = make_agent(weight_decay=0.01)
    agent.learn_task("1", batches("1"))
    prefix = agent.task_identifiers[0]
    frozen = [(layer.N[:, :k].clone(), layer.C[:k].clone(), layer.Sigma[:k].clone())
              for layer, k in zip(agent.layers, prefix)]
    head = {name: p.clone() for name, p in agent.model.last["1"].named_parameters()}
    agent.learn_task("2", batches("2"))
    for layer, k, (N, C, Sigma) in zip(agent.layers, prefix, frozen):
        assert torch.equal(layer.N[:, :k], N) and torch.equal(layer.C[:k], C) and torch.equal(layer.Sigma[:k], Sigma)
    for name, p in agent.model.last["1"].named_parameters():
        assert torch.equal(p, head[name])


def test_later_task_does_change_its_own_components():
    agent = make_agent()
    agent.learn_task("1", batches("1"))
    prefix = agent.task_identifiers[0]
    new_part = [layer.Sigma[k:].clone() for layer, k in zip(agent.layers, prefix)]
    agent.begin_task("2")
    agent.observe(*batches("2")[0])
    assert any(not torch.equal(layer.Sigma[k:k + len(s)], s) for layer, k, s in zip(agent.layers, prefix, new_part))


def test_end_of_task_packs_kept_components_after_frozen_ones_and_refills():
    agent = make_agent(energy_sv=0.01)
    layer = agent.layers[0]
    with torch.no_grad():
        layer.Sigma.fill_(1e-4)
        layer.Sigma[[3, 7, 11]] = torch.tensor([5.0, -4.0, 3.0])
    kept = (layer.N[:, [3, 7, 11]].clone(), layer.C[[3, 7, 11]].clone(), layer.Sigma[[3, 7, 11]].clone())
    rank = layer.rank
    agent.end_task("1")
    assert agent.task_identifiers[0][0] == 3 and agent.chann_used[0][0] == 3
    assert agent.task_index == {"1": 0}
    assert layer.rank == rank
    assert torch.equal(layer.N[:, :3], kept[0]) and torch.equal(layer.C[:3], kept[1])
    assert torch.equal(layer.Sigma[:3], kept[2])
    assert not torch.equal(layer.Sigma[3:], torch.full((rank - 3,), 1e-4))

    with torch.no_grad():
        layer.Sigma[3:].fill_(1e-4)
        layer.Sigma[[5, 9]] = torch.tensor([2.0, 1.0])
    agent.end_task("2")
    assert agent.task_identifiers[1][0] == 5 and agent.chann_used[1][0] == 2
    assert torch.equal(layer.Sigma[:3], kept[2])


def test_fresh_components_after_a_task_are_the_published_draws():
    """Per layer in order: kaiming_normal_ of an (out × free) N, of a (free × in·k·k) C, normal_ of Sigma."""
    agent = make_agent(energy_sv=0.3, grow_network=True, grow_to_mean=True)
    agent.learn_task("1", batches("1", n_batches=1))
    torch.manual_seed(123)
    agent.end_task("2")  # task 2's components pruned without training: some kept, the rest refilled
    torch.manual_seed(123)
    for layer, kept in zip(agent.layers, agent.task_identifiers[1]):
        free = layer.rank - kept
        assert free > 0
        N = torch.nn.init.kaiming_normal_(torch.empty(layer.output_channel, free))
        C = torch.nn.init.kaiming_normal_(torch.empty(free, layer.fan_in))
        Sigma = torch.nn.init.normal_(torch.empty(free))
        assert torch.equal(layer.N[:, kept:], N) and torch.equal(layer.C[kept:], C)
        assert torch.equal(layer.Sigma[kept:], Sigma)


def test_grow_network_refills_to_the_mean_of_earlier_identifiers():
    agent = make_agent(grow_network=True, energy_sv=0.01, grow_to_mean=True)
    layer = agent.layers[0]  # 18 components at the start
    with torch.no_grad():
        layer.Sigma.fill_(1.0)
    agent.end_task("1")  # keeps all 18: nothing is free, but nothing grows after the first task
    assert agent.task_identifiers[0][0] == 18 and layer.rank == 18
    agent.end_task("2")  # no room was left for task 2: free 0 < mean(18) -> 18 fresh components
    assert agent.task_identifiers[1][0] == 18 and layer.rank == 36
    with torch.no_grad():
        layer.Sigma[18:].fill_(1.0)
    agent.end_task("3")  # keeps all 18 new ones: free 0 < mean(18, 18) -> 18 fresh again
    assert agent.task_identifiers[2][0] == 36 and layer.rank == 54
    assert agent.chann_used[2][0] == 18


def test_without_growth_the_rank_never_changes():
    agent = make_agent()
    for task in ("1", "2"):
        agent.learn_task(task, batches(task, n_batches=1))
    assert [layer.rank for layer in agent.layers] == [18, 57, 104, 115, 170]


def test_evaluation_uses_the_task_prefix_and_its_head():
    agent = make_agent()
    agent.learn_task("1", batches("1"))
    data = batches("1", n_batches=2, seed=99)
    expected = sum(int((agent.model(x, "1", agent.task_identifiers[0]).argmax(1) == y).sum()) for x, y, _ in data)
    assert agent.evaluate(data) == pytest.approx(100.0 * expected / 16)


def test_hoyer_and_orthogonality_values():
    assert float(hoyer(torch.tensor([0.0, 3.0, 0.0]))) == pytest.approx(0.0)
    assert float(hoyer(torch.tensor([1.0, -1.0, 1.0, 1.0]))) == pytest.approx(1.0)
    assert float(hoyer_square(torch.tensor([1.0, 1.0]))) == pytest.approx(1.0)
    q, _ = torch.linalg.qr(torch.randn(10, 4))
    assert float(orthogonality(q)) == pytest.approx(0.0, abs=1e-10)
    assert float(orthogonality(q.t())) == pytest.approx(0.0, abs=1e-10)
    assert float(orthogonality(2 * torch.eye(3))) == pytest.approx(27 / 9)


def test_loss_is_cross_entropy_plus_weighted_sparsity_and_orthogonality():
    """Each term against its formula computed here from the parameters, before the step ``observe`` takes."""
    agent = make_agent(sparse_wt=0.3, perp_wt=0.7)
    agent.learn_task("1", batches("1", n_batches=1))  # a frozen prefix for task 2: the fast terms are in use
    for dropout in (m for m in agent.model.modules() if isinstance(m, torch.nn.Dropout)):
        dropout.p = 0.0
    x, y, tasks = batches("2")[0]
    with torch.no_grad():
        agent.model.train()
        ce = F.cross_entropy(agent.model(x, "2"), y)
        sigmas = [layer.Sigma.double() for layer in agent.layers]
        hoyer_sum = sum(s.abs().sum() / s.pow(2).sum().sqrt() - 1 for s in sigmas)

        def off_identity(a):
            gram = a @ a.t() if a.shape[0] <= a.shape[1] else a.t() @ a
            return ((gram - torch.eye(len(gram), dtype=gram.dtype)) ** 2).mean()

        orth_sum = sum(off_identity(layer.N.double()) + off_identity(layer.C.double()) for layer in agent.layers)
    agent.training_heads = ["2"]
    agent.begin_task("2")
    agent.model.train()
    terms = agent.observe(x, y, tasks)
    assert float(terms["ce"]) == pytest.approx(float(ce), rel=1e-5)
    assert float(terms["sparsity"]) == pytest.approx(0.3 * float(hoyer_sum), rel=1e-5)
    assert float(terms["orthogonality"]) == pytest.approx(0.7 * float(orth_sum), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(float(ce + 0.3 * hoyer_sum + 0.7 * orth_sum), rel=1e-5)


def test_multihead_loss_sums_each_head_over_its_samples_and_divides_by_batch():
    agent = make_agent()
    agent.model.eval()
    x = torch.randn(6, 3, 32, 32)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    tasks = ["1", "2", "1", "2", "2", "1"]
    features = agent.model.features(x)
    one, two = torch.tensor([0, 2, 5]), torch.tensor([1, 3, 4])
    expected = (F.cross_entropy(agent.model.last["1"](features[one]), y[one], reduction="sum")
                + F.cross_entropy(agent.model.last["2"](features[two]), y[two], reduction="sum")) / 6
    torch.testing.assert_close(agent.classification_loss(x, y, tasks), expected)


def test_model_size_counts_the_components_used():
    agent = make_agent(tasks=("1",))
    agent.learn_task("1", batches("1", n_batches=1))
    used = agent.task_identifiers[0]
    layers = [(27, 64), (576, 64), (576, 128), (1152, 128), (512, 256)]
    numbers = sum(f * c + o * c + c for (f, o), c in zip(layers, used)) + (1024 * 2 + 2) + 5
    assert agent.model_size_mb() == pytest.approx(4 * numbers / 1e6)


def test_optimizers_follow_the_published_flags():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert make_optimizer(params, "amsgrad", 0.1, 0.9, 0.0).defaults["amsgrad"] is True
    assert make_optimizer(params, "SGD", 0.1, 0.5, 0.0).defaults["momentum"] == 0.5
    with pytest.raises(UserError, match="valid: .*Adam"):
        make_optimizer(params, "Adamm", 0.1, 0.9, 0.0)


def test_svdnet_needs_an_svd_model():
    model = build_model("customnet", "Net")
    model.add_heads({"1": 2})
    with pytest.raises(UserError, match="Net_SVD"):
        SVDNet(model, SVDNetSettings())


def separable_batches(task, n_batches, seed):
    """Two classes told apart by the sign of a constant added to every pixel: learnable in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(n_batches):
        y = torch.randint(0, 2, (16,), generator=generator)
        x = 0.5 * torch.randn(16, 3, 32, 32, generator=generator) + (2.0 * y - 1).view(-1, 1, 1, 1)
        data.append((x, y, [task] * 16))
    return data


def test_dense_baseline_learns_with_the_default_agent():
    agent = dense_agent(tasks=("1",), schedule=[3])
    held_out = separable_batches("1", 4, seed=1)
    before = agent.evaluate(held_out)
    agent.learn_task("1", separable_batches("1", 8, seed=0))
    after = agent.evaluate(held_out)
    agent.model.eval()
    with torch.no_grad():
        correct = sum(int((agent.model(x, "1").argmax(1) == y).sum()) for x, y, _ in held_out)
    assert after == 100.0 * correct / 64
    assert after >= 95 and after > before + 20


def test_a_task_not_trained_alone_is_evaluated_with_the_kept_components_only():
    agent = make_agent()
    agent.learn_task("1", batches("1", n_batches=1))
    assert agent.task_ranks("2") == agent.task_identifiers[0]
