"""Speed options: channels-last (on by default on the CPU), ``--amp`` (bfloat16) and ``--compile``.

Each must stay close to the plain float32 path (zero forgetting under each: ``test_svdnet_agent``)."""
import pytest
import torch

from helpers import batches, dense_agent, svd_agent


def make_agent(model_name="Net_SVD", **overrides):
    if model_name == "Net_SVD":
        return svd_agent(grow_network=True, **overrides)
    return dense_agent(**overrides)


def train(agent, *tasks):
    """Learn ``tasks`` from the same random state whatever was drawn before (refills after a task draw from it)."""
    torch.manual_seed(1)
    for task in tasks:
        agent.learn_task(task, batches(task))


def loss_and_gradients(agent, task="2"):
    """The loss terms and every parameter's gradient for one batch of ``task``, the optimizer step left out."""
    agent.training_heads = [task]
    agent.begin_task(task)
    agent.model.train()
    inputs, targets, tasks = batches(task)[0]
    agent.model.zero_grad(set_to_none=True)
    for dropout in (m for m in agent.model.modules() if isinstance(m, torch.nn.Dropout)):
        dropout.p = 0.0  # masks are drawn in memory order: channels-last would draw others
    with agent.autocast():
        terms = {"ce": agent.classification_loss(inputs, targets, tasks)}
    terms.update(agent.regularization())
    sum(terms.values()).backward()
    gradients = {name: p.grad for name, p in agent.model.named_parameters() if p.grad is not None}
    return {name: float(value.detach()) for name, value in terms.items()}, gradients


@pytest.mark.parametrize("model_name, options", [("Net_SVD", {"channels_last": True}), ("Net", {"channels_last": True}),
                                                 ("Net_SVD", {"compile": True})], ids=["Net_SVD-channels_last",
                                                                                       "Net-channels_last", "compile"])
def test_same_loss_and_gradients_up_to_rounding(model_name, options, eager_compile):
    """After a first task (so that later components are frozen), one step's loss and gradients as in the plain path.

    Rounding: float32 sums taken in another order differ by about 1e-6 of each gradient's largest entry (4e-6 at
    most, measured on these batches), so the tolerance is 1e-4 of it. (Whole trainings are not compared: Adam turns
    rounding-level differences of near-zero gradients into steps of the learning rate's size.)
    """
    plain, faster = make_agent(model_name), make_agent(model_name, **options)
    train(plain, "1")
    faster.load_training_state(plain.training_state())
    expected_terms, expected_gradients = loss_and_gradients(plain)
    terms, gradients = loss_and_gradients(faster)
    assert terms == pytest.approx(expected_terms, rel=1e-5)
    assert sorted(gradients) == sorted(expected_gradients)
    for name, gradient in expected_gradients.items():
        torch.testing.assert_close(gradients[name], gradient, rtol=0, atol=1e-4 * float(gradient.abs().max()),
                                   msg=name)


def test_amp_runs_the_forward_pass_in_bfloat16_and_the_loss_in_float32():
    agent = make_agent(amp=True)
    seen = []
    agent.model.conv1.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    agent.training_heads = ["1"]
    agent.begin_task("1")
    inputs, targets, tasks = batches("1")[0]
    terms = agent.observe(inputs, targets, tasks)
    assert seen == [torch.bfloat16]
    assert all(value.dtype == torch.float32 and torch.isfinite(value) for value in terms.values())
    assert all(p.dtype == torch.float32 for p in agent.model.parameters())
    plain = make_agent()
    plain.training_heads = ["1"]
    plain.begin_task("1")
    assert float(terms["ce"]) == pytest.approx(float(plain.observe(inputs, targets, tasks)["ce"]), rel=0.05)
