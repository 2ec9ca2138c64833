"""The baselines' defining rules, each checked against an independent computation on a tiny problem: L2's and EWC's
penalties and anchors, EWC's Fisher, MAS's importance, SI's path integral, GEM's projected step and the rehearsal
memory."""
import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from torch import nn

from agents import agent_class
from agents.exp_replay import GEM_RIDGE, project_gradient
from agents.regularization import SI_DAMPING
from dataloaders import BatchTransform, TaskData, TaskLoader
from experiment.protocols import Hooks, Progress, TaskStream, learn_sequentially
from evaluation.metrics import bwt, forgetting
from models.multihead import MultiHeadNet


class TinyNet(MultiHeadNet):
    """One linear layer and a ReLU on 1×3×3 images, then the heads: no dropout, so every step is reproducible."""

    def __init__(self):
        super().__init__()
        self.flatten, self.body, self.relu = nn.Flatten(), nn.Linear(9, 6), nn.ReLU()
        self.n_feat = 6
        self.last = nn.ModuleDict()

    def feature_layers(self):
        return [self.flatten, self.body, self.relu]

    def features(self, x, ranks=None):
        return self.relu(self.body(self.flatten(x)))


def tiny_task(name, n=24, seed=None, flip=False):
    """``n`` random 1×3×3 images of two classes told apart by their mean (labels swapped with ``flip``)."""
    generator = torch.Generator().manual_seed(int(name) if seed is None else seed)
    images = torch.randint(0, 256, (n, 1, 3, 3), dtype=torch.uint8, generator=generator)
    labels = (images.float().mean((1, 2, 3)) > 127.5).long()
    return TaskData(name, images, 1 - labels if flip else labels, BatchTransform([0.5], [0.25]))


def loader(task, batch_size=8):
    return TaskLoader(task, batch_size, shuffle=True)


def tiny_agent(agent_type, agent_name, tasks=("1", "2", "3"), heads=None, **settings):
    torch.manual_seed(0)
    model = TinyNet()
    model.add_heads(heads or {task: 2 for task in tasks})
    cls = agent_class(agent_type, agent_name)
    return cls(model, cls.Settings(**{"schedule": [1], "print_freq": 1000, "lr": 0.05, **settings}))


def parameters_of(agent):
    return {name: p.detach().clone() for name, p in agent.model.named_parameters()}


# ---------------------------------------------------------------- L2 and its anchors


def test_l2_penalty_is_the_squared_distance_to_the_parameters_after_the_last_task():
    agent = tiny_agent("regularization", "L2", reg_coef=0.7)
    assert agent.regularization() == {}
    agent.learn_task("1", loader(tiny_task("1")))
    after_first = parameters_of(agent)
    agent.learn_task("2", loader(tiny_task("2")))
    after_second = parameters_of(agent)
    assert list(agent.anchors) == [1]  # one running anchor, at the parameters after task 2
    with torch.no_grad():
        for p in agent.model.parameters():
            p.add_(0.1)
    expected = 0.7 * sum(((p.detach() - after_second[name]) ** 2).sum() for name, p in agent.model.named_parameters())
    assert float(agent.regularization()["penalty"].detach()) == pytest.approx(float(expected), rel=1e-6)
    assert not all(torch.equal(after_first[name], after_second[name]) for name in after_first)


# ---------------------------------------------------------------- EWC


def fisher_by_hand(agent, train_loader):
    """Σ_batches g² · (batch size) / (number of batches), g the gradient of the cross-entropy at the predicted label:
    for the head ``(softmax − onehot(argmax))ᵀ · features / B`` written out, for the body by autograd of the same
    loss computed from the plain model."""
    model = agent.model
    model.eval()
    body = [model.body.weight, model.body.bias]
    fisher = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    batches = list(train_loader)
    for inputs, _, tasks in batches:
        head = model.last[tasks[0]][0]
        features = model.features(inputs)
        logits = head(features)
        predicted = logits.argmax(1)
        error = (torch.softmax(logits, 1) - F.one_hot(predicted, 2).float()) / len(inputs)
        head_weight, head_bias = error.T @ features, error.sum(0)
        body_weight, body_bias = torch.autograd.grad(F.cross_entropy(logits, predicted), body)
        for name, gradient in ((f"last.{tasks[0]}.0.weight", head_weight), (f"last.{tasks[0]}.0.bias", head_bias),
                               ("body.weight", body_weight), ("body.bias", body_bias)):
            fisher[name] += gradient.detach() ** 2 * len(inputs) / len(batches)
    model.train()
    return fisher


class FixedOrder:
    """A loader whose batches come in the same order every pass, so a test can replay the agent's pass."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def test_ewc_importance_is_the_fisher_at_the_models_own_predictions():
    agent = tiny_agent("regularization", "EWC", reg_coef=1.0)
    task_loader = FixedOrder(list(TaskLoader(tiny_task("1", n=20), 8, shuffle=False)))  # batches of 8, 8 and 4
    agent.learn_task("1", task_loader)
    expected = fisher_by_hand(agent, task_loader)
    importance = agent.anchors[1]["importance"]
    assert set(importance) == set(expected)
    for name in expected:
        assert torch.allclose(importance[name], expected[name], rtol=1e-5, atol=1e-8), name
    assert float(importance["last.1.0.weight"].abs().sum()) > 0
    assert float(importance["last.2.0.weight"].abs().sum()) == 0  # a head the task never reaches


def test_ewc_keeps_an_anchor_per_task_and_online_ewc_adds_them_up():
    separate, online = (tiny_agent("regularization", name, reg_coef=1.0) for name in ("EWC", "EWC_online"))
    for agent in (separate, online):
        agent.learn_task("1", FixedOrder(list(TaskLoader(tiny_task("1"), 8, shuffle=False))))
        agent.learn_task("2", FixedOrder(list(TaskLoader(tiny_task("2"), 8, shuffle=False))))
    assert list(separate.anchors) == [1, 2] and list(online.anchors) == [1]
    first, second = online_fishers(online)
    for name, importance in online.anchors[1]["importance"].items():
        assert torch.allclose(importance, first[name] + second[name], rtol=1e-5, atol=1e-8), name


def online_fishers(agent):
    """The Fisher of each task, recomputed by hand from an agent that replays the same run (same seed and data)."""
    replay = tiny_agent("regularization", "EWC_online", reg_coef=1.0)
    fishers = []
    for name in ("1", "2"):
        task_loader = FixedOrder(list(TaskLoader(tiny_task(name), 8, shuffle=False)))
        replay.learn_task(name, task_loader)
        fishers.append(fisher_by_hand(replay, task_loader))
    return fishers


# ---------------------------------------------------------------- MAS


def test_mas_importance_is_the_mean_absolute_gradient_of_the_heads_squared_outputs():
    agent = tiny_agent("regularization", "MAS", reg_coef=1.0)
    task_loader = FixedOrder(list(TaskLoader(tiny_task("1", n=20), 8, shuffle=False)))
    agent.learn_task("1", task_loader)
    model = agent.model
    model.eval()
    parameters = dict(model.named_parameters())
    expected = {name: torch.zeros_like(p) for name, p in parameters.items()}
    for inputs, _, tasks in task_loader:
        outputs = model(inputs, tasks[0])
        gradients = torch.autograd.grad(outputs.pow(2).mean(), list(parameters.values()), allow_unused=True)
        for name, gradient in zip(parameters, gradients):
            if gradient is not None:
                expected[name] += gradient.abs() / len(task_loader)
    for name, importance in agent.anchors[1]["importance"].items():
        assert torch.allclose(importance, expected[name], rtol=1e-5, atol=1e-8), name


# ---------------------------------------------------------------- SI


class Recording:
    """A loader that records, before each batch is trained on, the model's parameters (a step's starting point)."""

    def __init__(self, model, batches):
        self.model, self.batches, self.before = model, batches, []

    def __iter__(self):
        for batch in self.batches:
            self.before.append({name: p.detach().clone() for name, p in self.model.named_parameters()})
            yield batch

    def __len__(self):
        return len(self.batches)


def path_integral(agent, recording):
    """``Σ_steps −g · Δθ``, g the gradient of the cross-entropy alone at each step's start (the penalty left out),
    from the recorded parameters."""
    model = copy.deepcopy(agent.model)
    parameters = dict(model.named_parameters())
    ends = recording.before[1:] + [{name: p.detach().clone() for name, p in agent.model.named_parameters()}]
    w = {name: torch.zeros_like(p) for name, p in parameters.items()}
    for (inputs, targets, tasks), start, end in zip(recording.batches, recording.before, ends):
        with torch.no_grad():
            for name, p in parameters.items():
                p.copy_(start[name])
        loss = F.cross_entropy(model(inputs, tasks[0]), targets)
        gradients = torch.autograd.grad(loss, list(parameters.values()), allow_unused=True)
        for name, gradient in zip(parameters, gradients):
            if gradient is not None:
                w[name] -= gradient * (end[name] - start[name])
    return w


def test_si_importance_is_the_path_integral_of_the_unpenalized_loss():
    agent = tiny_agent("regularization", "SI", reg_coef=5.0)
    initial = parameters_of(agent)
    first = Recording(agent.model, list(TaskLoader(tiny_task("1"), 6, shuffle=False)))
    agent.learn_task("1", first)
    after_first = parameters_of(agent)
    w_first = path_integral(agent, first)
    expected = {name: w_first[name] / ((after_first[name] - initial[name]) ** 2 + SI_DAMPING) for name in initial}
    for name, importance in agent.anchors[1]["importance"].items():
        assert torch.allclose(importance, expected[name], rtol=1e-4, atol=1e-7), name

    second = Recording(agent.model, list(TaskLoader(tiny_task("2"), 6, shuffle=False)))
    agent.learn_task("2", second)  # now with the penalty, which g leaves out
    w_second = path_integral(agent, second)
    after_second = parameters_of(agent)
    for name, importance in agent.anchors[1]["importance"].items():
        added = w_second[name] / ((after_second[name] - after_first[name]) ** 2 + SI_DAMPING)
        assert torch.allclose(importance, expected[name] + added, rtol=1e-4, atol=1e-7), name
    assert all(float(w.abs().sum()) == 0 for w in agent.w.values())  # reset after each task


# ---------------------------------------------------------------- rehearsal memory


def test_rehearsal_memory_holds_memory_size_over_tasks_samples_of_each_task():
    agent = tiny_agent("exp_replay", "Naive_Rehearsal", memory_size=12)
    tasks = {name: tiny_task(name, n=20) for name in ("1", "2", "3")}
    for name, task in tasks.items():
        agent.learn_task(name, loader(task))
    assert [len(slot["targets"]) for slot in agent.memory.values()] == [4, 4, 4]
    for number, (name, task) in enumerate(tasks.items(), start=1):
        slot = agent.memory[number]
        assert slot["tasks"] == [name] * 4
        everything = task.transform(task.images).flatten(1)
        for sample, target in zip(slot["inputs"].flatten(1), slot["targets"]):
            matches = (everything == sample).all(1)
            assert matches.any() and bool((task.targets[matches] == target).all())


def test_rehearsal_trains_on_the_memory_repeated_about_one_to_one_with_the_new_task():
    agent = tiny_agent("exp_replay", "Naive_Rehearsal", memory_size=12)
    agent.learn_task("1", loader(tiny_task("1", n=40)))
    mixed = agent.replaying(loader(tiny_task("2", n=40)))
    names = [name for _, _, batch_names in mixed for name in batch_names]
    assert names.count("1") == 12 * (40 // 12) and names.count("2") == 40
    assert names[:40] != ["2"] * 40  # shuffled in, not appended


# ---------------------------------------------------------------- GEM


def test_gem_projection_is_the_closest_gradient_with_no_negative_inner_product():
    generator = torch.Generator().manual_seed(3)
    memories = torch.randn(3, 8, generator=generator, dtype=torch.float64)
    gradient = -memories.sum(0) + 0.3 * torch.randn(8, generator=generator, dtype=torch.float64)
    projected = project_gradient(gradient, memories, margin=0.0)
    exact = minimize(lambda z: 0.5 * np.sum((z - gradient.numpy()) ** 2), gradient.numpy(), method="SLSQP",
                     constraints=[{"type": "ineq", "fun": lambda z, m=m: m @ z} for m in memories.numpy()],
                     options={"ftol": 1e-12}).x
    assert (memories @ gradient < 0).any()
    assert np.allclose(projected.numpy(), exact, atol=1e-2)
    assert (memories @ projected >= -1e-2).all()


def gradient_of(loss, parameters):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, parameters)])


def test_gem_step_has_no_negative_inner_product_with_any_memory_gradient(monkeypatch):
    """Task 2 is task 1 with its labels swapped, through a copy of task 1's head: its gradient on the shared layer
    opposes task 1's. The step changes the shared layer and task 2's head."""
    agent = tiny_agent("exp_replay", "GEM", memory_size=16, heads={"1": 2, "2": 2})
    agent.learn_task("1", loader(tiny_task("1")))
    model = agent.model
    model.last["2"].load_state_dict(model.last["1"].state_dict())
    swapped = TaskLoader(dataclasses.replace(tiny_task("1", flip=True), name="2"), 24, shuffle=False)
    inputs, targets, _ = next(iter(swapped))
    body, head = [model.body.weight, model.body.bias], list(model.last["2"].parameters())
    raw = gradient_of(F.cross_entropy(model(inputs, "2"), targets), body + head)
    slot = agent.memory[1]
    memory = torch.cat([gradient_of(F.cross_entropy(model(slot["inputs"], "1"), slot["targets"]), body),
                        torch.zeros(sum(p.numel() for p in head))])
    stepped = []
    monkeypatch.setattr(torch.optim.Adam, "step", lambda optimizer: stepped.append(
        torch.cat([p.grad.reshape(-1) for group in optimizer.param_groups for p in group["params"]])))
    agent.learn_task("2", swapped)  # one step, which the patch leaves untaken
    assert float(memory @ raw) < 0  # the conflict GEM resolves
    stepped = {"gradient": stepped[0]}
    v = float(memory @ (stepped["gradient"] - raw)) / float(memory @ memory)  # g̃ = g + v·m
    assert float(memory @ stepped["gradient"]) >= -GEM_RIDGE * v - 1e-6
    assert torch.allclose(stepped["gradient"], raw + v * memory, atol=1e-5)


def test_gem_does_not_replay_its_memory(monkeypatch):
    agent = tiny_agent("exp_replay", "GEM", memory_size=16)
    agent.learn_task("1", loader(tiny_task("1")))
    seen = []
    observe = agent.observe
    monkeypatch.setattr(agent, "observe", lambda inputs, targets, tasks: seen.extend(tasks) or
                        observe(inputs, targets, tasks))
    agent.learn_task("2", loader(tiny_task("2")))
    assert seen == ["2"] * 24 and [len(slot["targets"]) for slot in agent.memory.values()] == [8, 8]


# ---------------------------------------------------------------- forgetting, measured


class Silent(Hooks):
    pass


def test_fine_tuning_forgets_a_task_overwritten_by_the_next():
    """One shared head, and task 2 is task 1 with its labels swapped: what task 2 learns undoes task 1."""
    agent = tiny_agent("default", "NormalNN", heads={"All": 2}, schedule=[30])
    first, second = tiny_task("1", n=32), tiny_task("2", n=32, seed=1, flip=True)
    stream = TaskStream(["1", "2"], {"1": first, "2": second}, {"1": first, "2": second}, 16, torch.device("cpu"))
    acc_matrix = learn_sequentially(agent, stream, Progress(), Silent())
    assert acc_matrix["1"]["1"] > 80 and acc_matrix["2"]["1"] < 20
    assert bwt(acc_matrix) == acc_matrix["2"]["1"] - acc_matrix["1"]["1"] < -60
    assert forgetting(acc_matrix) == -bwt(acc_matrix)
