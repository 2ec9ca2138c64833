"""Without the task label (``--task_agnostic``): each rule on heads whose outcome is known by hand, FACIL's
concatenation, every method's per-task outputs against its own networks, the task-aware results unchanged with the
flag on, and the accuracies of a finished run against an independent computation from its saved model."""
import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from agents import agent_class, agent_types
from dataloaders import BatchTransform, TaskData, TaskLoader
from evaluation.task_agnostic import RULES, by_entropy, by_log_softmax, by_logits, stacked, task_agnostic_record
from experiment.builders import load_data, make_tasks
from experiment.config import read_config
from experiment.protocols import Progress, TaskStream
from experiment.saved_model import saved_agent
from helpers import (QUICK, assert_same_outputs, batches, dense_agent, evaluated_logits, outputs, run_driver,
                     svd_agent)
from models import build_model
from tiny_convnet import conv_agent, conv_loader, conv_task

CPU = torch.device("cpu")
TWO_TASKS = [*QUICK, "--batch_size", "10", "--first_split_size", "5", "--other_split_size", "5", "--repeat", "1",
             "--dataset", "CIFAR10"]
DENSE = ["--model_type", "customnet", "--model_name", "Net"]


# ---------------------------------------------------------------- the rules


def constant_heads(agent, biases):
    """Every head of ``agent`` outputs its bias whatever the input: ``{task: logits}``."""
    with torch.no_grad():
        for task, bias in biases.items():
            agent.model.last[task][0].weight.zero_()
            agent.model.last[task][0].bias.copy_(torch.tensor(bias))


def task_of(name, targets, seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (len(targets), 3, 32, 32), dtype=torch.uint8, generator=generator)
    return TaskData(name, images, torch.tensor(targets), BatchTransform([0.5] * 3, [0.25] * 3))


def with_one_agent():
    agent = dense_agent(tasks=("1", "2"), n_classes=3)
    constant_heads(agent, HEADS)
    return [(agent, "1"), (agent, "2")]


def with_an_agent_per_task():
    """As ``--ind_models``: a model per task, each with only its own head."""
    learnt = []
    for task in ("1", "2"):
        agent = dense_agent(tasks=(task,), n_classes=3)
        constant_heads(agent, {task: HEADS[task]})
        learnt.append((agent, task))
    return learnt


HEADS = {"1": [5.0, 5.0, -10.0], "2": [1.0, 0.0, 0.0]}
"""Task 1's head: the largest logit (5, classes 0 and 1 tied: class 0), a flat softmax over two classes (log-softmax
max −log 2 ≈ −0.693, entropy log 2 ≈ 0.693); task 2's: a smaller logit (1), a log-softmax max of
1 − log(e + 2) ≈ −0.551, an entropy of ≈ 0.976 nats. So ``logits`` picks task 1 (class 0), ``log_softmax`` task 2
(class 0), ``entropy`` task 1 (class 0), for every sample."""
TARGETS = {"1": [0, 0, 1, 2], "2": [0, 0, 0, 1]}


@pytest.mark.parametrize("make_learnt", [with_one_agent, with_an_agent_per_task], ids=["one-agent", "agent-per-task"])
def test_each_rule_picks_the_task_known_by_hand(make_learnt):
    learnt = make_learnt()
    evaluation = {task: task_of(task, targets, seed=int(task)) for task, targets in TARGETS.items()}
    stream = TaskStream(["1", "2"], {}, evaluation, 3, CPU, task_agnostic=True)
    progress = Progress()
    assert stream.accuracies(progress, "1", learnt[:1], ["1"]) == {"1": 50.0}  # class 0 of 0, 0, 1, 2
    assert stream.accuracies(progress, "2", learnt, ["1", "2"]) == {"1": 50.0, "2": 75.0}
    by_hand = {  # rule: (task 1's accuracy and task identity, task 2's), after task 2
        "logits": ((50.0, 100.0), (0.0, 0.0)),  # every sample to task 1, class 0
        "log_softmax": ((0.0, 0.0), (75.0, 100.0)),  # every sample to task 2, class 0
        "entropy": ((50.0, 100.0), (0.0, 0.0)),  # every sample to task 1, class 0
    }
    record = task_agnostic_record(progress.task_agnostic)
    assert list(record) == list(RULES) == list(by_hand)
    for rule, ((first, first_id), (second, second_id)) in by_hand.items():
        entry = record[rule]
        assert entry["acc_matrix"] == {"1": {"1": 50.0}, "2": {"1": first, "2": second}}
        assert entry["task_id_matrix"] == {"1": {"1": 100.0}, "2": {"1": first_id, "2": second_id}}
        assert entry["avg_acc"] == (first + second) / 2 and entry["task_id_acc"] == (first_id + second_id) / 2
        assert entry["bwt"] == first - 50.0 and entry["forgetting"] == 50.0 - first


def test_the_rules_are_facils_argmax_of_the_concatenated_heads_and_the_lowest_entropy():
    """``calculate_metrics``: ``torch.cat(outputs, dim=1).argmax(1)`` (raw, or each head's log-softmax), the index
    into the concatenation read as a task (by the heads' sizes) and a class in it; the entropy rule against
    ``torch.special.entr``, on heads of one size."""
    generator = torch.Generator().manual_seed(0)
    logits = [torch.randn(64, classes, generator=generator) for classes in (2, 5, 3)]
    logits[1][:8] = logits[0][:8, :1] + 0.0  # ties across heads: the earlier head wins, as in the concatenation
    offsets = torch.tensor([0, 2, 7])
    for rule, scores in ((by_logits, logits), (by_log_softmax, [z.log_softmax(1) for z in logits])):
        flat = torch.cat(scores, dim=1).argmax(1)
        task = (flat.unsqueeze(1) >= offsets).sum(1) - 1
        chosen_task, chosen_class = rule(stacked(logits))
        assert torch.equal(chosen_task, task) and torch.equal(chosen_class, flat - offsets[task])
    same_size = [torch.randn(64, 4, generator=generator) for _ in range(3)]
    task = torch.stack([torch.special.entr(z.softmax(1)).sum(1) for z in same_size]).argmin(0)
    chosen_task, chosen_class = by_entropy(stacked(same_size))
    assert torch.equal(chosen_task, task)
    assert torch.equal(chosen_class, torch.stack([z.argmax(1) for z in same_size])[task, torch.arange(64)])


# ---------------------------------------------------------------- every method, through its own networks


def method_agent(agent_type, agent_name):
    """The method with two tasks of two classes learnt (one epoch): CACL on ``Net_SVD`` (one batch a task), every
    other on a ``TinyConvNet``; and a batch of inputs for them."""
    cls = agent_class(agent_type, agent_name)
    own = {name: value for name, value in (("reg_coef", 1.0), ("memory_size", 8), ("post_prune_epochs", 1))
           if name in {field.name for field in dataclasses.fields(cls.Settings)}}
    if agent_type == "SVDNet":
        agent = svd_agent(tasks=("1", "2"), **own)
        loaders = {task: batches(task, n_batches=1) for task in ("1", "2", "3")}
    else:
        agent = conv_agent(cls, tasks=("1", "2"), **own)
        loaders = {task: conv_loader(conv_task(task, n=16, seed=int(task), channel=int(task) % 3))
                   for task in ("1", "2", "3")}
    for task in ("1", "2"):
        agent.learn_task(task, loaders[task])
    return agent, next(iter(loaders["3"]))[0]


@pytest.mark.parametrize("agent_type, agent_name", [(agent_type, name) for agent_type, names in agent_types().items()
                                                    for name in names])
def test_every_methods_outputs_without_the_label_are_each_tasks_own_networks(agent_type, agent_name):
    """``task_outputs`` gives, bit for bit, what each task's ``task_network`` gives (a method whose networks
    differ by more than their heads must say so by ``trunk_key``)."""
    agent, inputs = method_agent(agent_type, agent_name)
    outputs = agent.task_outputs(["1", "2"])(inputs)
    for task, logits in zip(["1", "2"], outputs):
        assert torch.equal(logits, evaluated_logits(agent, task, inputs)), task


def test_one_trunk_and_a_head_per_task_run_the_trunk_once_per_batch(monkeypatch):
    agent = dense_agent(tasks=("1", "2", "3"))
    calls = []
    forward = nn.Conv2d.forward
    monkeypatch.setattr(nn.Conv2d, "forward", lambda self, x: calls.append(self) or forward(self, x))
    outputs = agent.task_outputs(["1", "2", "3"])
    convolutions = sum(isinstance(layer, nn.Conv2d) for layer in agent.model.modules())
    assert len(outputs(batches("1")[0][0])) == 3 and len(calls) == convolutions


# ---------------------------------------------------------------- whole runs


@pytest.mark.parametrize("flags", [
    [],
    [*DENSE, "--agent_type", "default", "--agent_name", "NormalNN", "--ind_models"],
    [*DENSE, "--agent_type", "default", "--agent_name", "NormalNN", "--offline_training"],
], ids=["CACL", "separate-models", "joint-training"])
def test_task_aware_results_and_every_key_are_unchanged_with_the_flag_on(tmp_path, monkeypatch, capsys, cifar10_root,
                                                                         flags):
    tables, found, evaluations = {}, {}, {}
    for name, extra in (("off", []), ("on", ["--task_agnostic"])):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        status, tables[name], _ = run_driver(capsys, *TWO_TASKS, "--dataroot", cifar10_root, "--exp_name", "x",
                                             *flags, *extra)
        assert status == 0
        found[name] = outputs(tmp_path / name)
        with open(next((tmp_path / name / "results").glob("*/eval_results_run0.csv")), newline="") as stream:
            evaluations[name] = list(csv.DictReader(stream))
    assert all("task_agnostic" in content for path, content in found["on"].items() if path.endswith(".json"))
    assert_same_outputs(found["off"], {path: {key: value for key, value in content.items() if key != "task_agnostic"}
                                       if path.endswith(".json") else content for path, content in found["on"].items()})
    assert [{column: row[column] for column in evaluations["off"][0]} for row in evaluations["on"]] == \
        evaluations["off"]

    results = next((tmp_path / "on" / "results").iterdir())
    final = json.loads((results / "output_final.json").read_text())["task_agnostic"]["logits"]
    off_lines, on_lines = tables["off"].splitlines(), tables["on"].splitlines()
    assert f"without the task label (logits): task identity {final['task_id_acc']:.2f}" in tables["on"]
    kept = [line for line in on_lines if not line.startswith("without the task label")]
    assert len(kept) == len(off_lines) and all(on.startswith(off) for on, off in zip(kept, off_lines))
    assert kept[-3].endswith(f"{final['avg_acc']:10.2f} ± {final['std_acc']:4.2f}")  # the average row

    run = json.loads((results / "output_run0.json").read_text())
    for rule in RULES:
        for column, key in ((f"task_agnostic_{rule}", "acc_matrix"), (f"task_id_{rule}", "task_id_matrix")):
            from_csv = {}
            for row in evaluations["on"]:
                from_csv.setdefault(row["task_trained"], {})[row["task_evaluated"]] = float(row[column])
            assert from_csv == run["task_agnostic"][rule][key]


def logits_of_every_task(per_task, loader):
    """``[N × classes of task t for every task t]`` over a loader, and its targets."""
    outputs, targets = [], []
    with torch.no_grad():
        for inputs, batch_targets, _ in loader:
            outputs.append([logits(inputs) for logits in per_task])
            targets.append(batch_targets)
    return [torch.cat(parts) for parts in zip(*outputs)], torch.cat(targets)


def by_hand(logits, own, targets):
    """Each rule's (accuracy %, task identity %) computed here: FACIL's concatenations, and the entropy rule."""
    offsets = torch.tensor([0] + [z.shape[1] for z in logits]).cumsum(0)[:-1]
    chosen = {}
    for rule, scores in (("logits", logits), ("log_softmax", [z.log_softmax(1) for z in logits])):
        flat = torch.cat(scores, dim=1).argmax(1)
        task = (flat.unsqueeze(1) >= offsets).sum(1) - 1
        chosen[rule] = (task, flat - offsets[task])
    entropy = torch.stack([-(z.softmax(1) * z.log_softmax(1)).sum(1) for z in logits])
    task = entropy.argmin(0)
    chosen["entropy"] = (task, torch.stack([z.argmax(1) for z in logits])[task, torch.arange(len(targets))])
    return {rule: (100.0 * int(((task == own) & (label == targets)).sum()) / len(targets),
                   100.0 * int((task == own).sum()) / len(targets)) for rule, (task, label) in chosen.items()}


def saved_networks(flags, directory: Path, order, method):
    """Each task's logits from the saved model (in training order), as ``--loadmodel`` reads it (``saved_agent``),
    or from the state dict itself (a model per task under ``--ind_models``; one model with every head for a
    baseline, which saves only its tensors)."""
    config = read_config(flags)
    if method in ("separate", "shared"):
        def model_of(folder, heads):
            model = build_model("customnet", "Net")
            model.add_heads({task: 5 for task in heads})
            model.load_state_dict(torch.load(folder / "final_model.pth"))
            return model.eval().to(memory_format=torch.channels_last)

        def forward(model, task):
            return lambda inputs: model(inputs.contiguous(memory_format=torch.channels_last), task)

        if method == "separate":
            return [forward(model_of(directory / f"task{task}", [task]), task) for task in order]
        model = model_of(directory, order)
        return [forward(model, task) for task in order]
    agent = saved_agent(config, CPU, directory, 32, {task: 5 for task in order})
    assert agent.tasks_trained == order
    networks = {task: agent.task_network(task) for task in order}
    return [lambda inputs, task=task: agent.network_logits(networks[task], task, inputs) for task in order]


@pytest.mark.parametrize("method, flags", [
    ("CACL", []),
    ("PackNet", [*DENSE, "--agent_type", "packnet", "--agent_name", "PackNet", "--post_prune_epochs", "1"]),
    ("HAT", [*DENSE, "--agent_type", "hat", "--agent_name", "HAT"]),
    ("PNN", [*DENSE, "--agent_type", "pnn", "--agent_name", "PNN"]),
    ("separate", [*DENSE, "--agent_type", "default", "--agent_name", "NormalNN", "--ind_models"]),
    ("shared", [*DENSE, "--agent_type", "regularization", "--agent_name", "EWC", "--reg_coef", "10"]),
], ids=["CACL", "PackNet", "HAT", "PNN", "separate-models", "EWC"])
def test_accuracy_without_the_label_is_what_the_saved_model_gives(workdir, capsys, cifar10_root, method, flags):
    """After the last task, each rule's accuracy and task identity per task equal those computed here from the saved
    model's per-task logits, concatenated in training order; ``--loadmodel --task_agnostic`` gives them too."""
    run_flags = [*TWO_TASKS, "--dataroot", cifar10_root, "--exp_name", "x", *flags, "--task_agnostic"]
    status, _, _ = run_driver(capsys, *run_flags)
    assert status == 0
    folder = next((workdir / "results").iterdir())
    record = json.loads((folder / "output_run0.json").read_text())
    order = list(record["acc_matrix"])
    config = read_config(run_flags)
    stream = make_tasks(config, load_data(config.data), CPU).stream
    per_task = saved_networks(run_flags, workdir / "saves" / folder.name, order, method)
    for own, task in enumerate(order):
        logits, targets = logits_of_every_task(per_task, TaskLoader(stream.evaluation[task], 10, shuffle=False))
        for rule, (accuracy, identity) in by_hand(logits, own, targets).items():
            assert record["task_agnostic"][rule]["acc_matrix"][order[-1]][task] == accuracy, (rule, task)
            assert record["task_agnostic"][rule]["task_id_matrix"][order[-1]][task] == identity, (rule, task)
    if method == "CACL":
        status, _, _ = run_driver(capsys, *run_flags, "--loadmodel", folder.name)
        assert status == 0
        evaluated = json.loads((folder / "output_eval.json").read_text())
        for rule in RULES:
            assert evaluated["task_agnostic"][rule]["acc_matrix"] == {
                order[-1]: record["task_agnostic"][rule]["acc_matrix"][order[-1]]}
