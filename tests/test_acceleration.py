"""Speed options: channels-last (on by default on the CPU), ``--amp`` (bfloat16) and ``--compile``.

Each must stay close to the plain float32 path (zero forgetting under each: ``test_svdnet_agent``)."""
import logging

import pytest
import torch

from helpers import batches, dense_agent, operations, svd_agent


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


@pytest.mark.parametrize("model_name, options", [("Net_SVD", {"channels_last": True}), ("Net", {"channels_last": True})],
                         ids=["Net_SVD-channels_last", "Net-channels_last"])
def test_same_loss_and_gradients_up_to_rounding(model_name, options):
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


def first_step_of_task_2(agent):
    """The loss terms of the loop's first step of task 2 (``training_step``, from seed 1), and the parameters after
    it."""
    agent.training_heads = ["2"]
    agent.begin_task("2")
    agent.model.train()
    torch.manual_seed(1)
    terms = agent.training_step.run(*batches("2")[0])
    return ({name: float(value) for name, value in terms.items()},
            {name: p.detach().clone() for name, p in agent.model.named_parameters()})


def test_compile_compiles_the_whole_step_and_takes_the_eager_step(recorded_graphs, caplog):
    """``--compile`` on ``Net_SVD`` after a first task: dynamo compiles the forward pass with the whole loss, and the
    optimizer's step (Adam's ``lerp_`` and ``addcdiv_``); the step gives the eager step's losses and parameters up
    to rounding (the graphs run here without code generation; Adam's compiled update fuses a multiply-add), and its
    seconds are logged, compilation included."""
    plain, faster = make_agent(), make_agent(compile=True)
    train(plain, "1")
    faster.load_training_state(plain.training_state())
    expected_terms, expected_parameters = first_step_of_task_2(plain)
    with caplog.at_level(logging.INFO, logger="agents.step"):
        terms, parameters = first_step_of_task_2(faster)
    assert {"conv2d", "cross_entropy", "lerp_", "addcdiv_"} <= operations(recorded_graphs)
    logged = [record.getMessage().split(" took ")[0] for record in caplog.records if record.name == "agents.step"]
    assert logged == ["--compile: the first step of task 2 on batches of shape (8, 3, 32, 32)"]
    assert terms == pytest.approx(expected_terms, rel=1e-6)
    for name, parameter in expected_parameters.items():
        torch.testing.assert_close(parameters[name], parameter, rtol=0, atol=1e-6 * float(parameter.abs().max()),
                                   msg=name)


def test_a_batch_of_several_tasks_runs_its_step_eagerly(recorded_graphs):
    """Under ``--compile`` a batch of two tasks (as rehearsal makes) is not compiled; one of a single task is."""
    agent = dense_agent(compile=True)
    agent.training_heads = ["1", "2"]
    agent.begin_task("1")
    inputs, targets, _ = batches("1")[0]
    agent.training_step.run(inputs, targets, ["1"] * 4 + ["2"] * 4)
    assert recorded_graphs == []
    agent.training_step.run(*batches("1")[0])
    assert "conv2d" in operations(recorded_graphs)


def test_compiled_graphs_are_kept_for_the_tasks_of_a_long_sequence(recorded_graphs):
    """No ``torch._dynamo.reset()`` between tasks, and a graph for each task's step however many there are: with
    dynamo's default limit (8 graphs a function) the tenth task would run uncompiled."""
    agent = dense_agent(tasks=[str(task) for task in range(1, 11)], compile=True)
    compiled_in = []
    for task in range(1, 11):
        before = len(recorded_graphs)
        agent.learn_task(str(task), batches(str(task), n_batches=2))
        compiled_in.append(len(recorded_graphs) > before)
    assert all(compiled_in)


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
