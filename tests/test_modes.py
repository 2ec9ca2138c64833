"""The published driver's other modes, each end to end on tiny CIFAR-10 / MNIST files."""
import json
import random

import numpy as np
import pytest
import torch

import iBatchLearn
from agents import NormalNN
from agents.model_size import cacl_model_size_mb
from dataloaders import CIFAR10
from experiment.builders import load_data, make_tasks
from experiment.config import read_config
from experiment.protocols import TaskStream
from helpers import QUICK as ONE_EPOCH
from models import build_model
from utils.runtime import seed_everything

NET_SVD_LAYERS = [(27, 64), (576, 64), (576, 128), (1152, 128), (512, 256)]
QUICK = [*ONE_EPOCH, "--batch_size", "20", "--repeat", "1", "--first_split_size", "5", "--other_split_size", "5",
         "--exp_name", "mode"]


def run(workdir, capsys, *argv):
    status = iBatchLearn.main([*QUICK, *argv])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads((workdir / "results" / "mode_sparse_wt0.01" / "output_run0.json").read_text()), out


def test_ind_models_trains_one_model_per_task(workdir, cifar10_root, capsys):
    record, _ = run(workdir, capsys, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--ind_models")
    assert list(record["acc"]) == ["1", "2"] or list(record["acc"]) == ["2", "1"]
    first = list(record["acc_matrix"])[0]
    # each task is evaluated with its own model: its accuracy never changes
    assert record["acc_matrix"][first][first] == record["acc"][first]
    saves = workdir / "saves" / "mode_sparse_wt0.01"
    assert {p.name for p in saves.iterdir()} == {"task1", "task2"}
    sizes = []
    for task in ("1", "2"):
        one_model = torch.load(saves / f"task{task}" / "chann_used.pth")
        assert len(one_model) == 1 and record["channels"][str(list(record["acc"]).index(task))] == one_model[0]
        heads = {key for key in torch.load(saves / f"task{task}" / "final_model.pth") if key.startswith("last.")}
        assert heads == {f"last.{task}.0.weight", f"last.{task}.0.bias"}  # its own head only, as published
        sizes.append(cacl_model_size_mb(NET_SVD_LAYERS, one_model, 1024 * 5 + 5))
    assert record["model_size"] == pytest.approx(sum(sizes))


def test_offline_training_learns_all_tasks_jointly(workdir, cifar10_root, capsys):
    record, _ = run(workdir, capsys, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--offline_training")
    assert list(record["acc_matrix"]) == ["All"]
    assert sorted(record["acc"]) == ["1", "2"]
    identifiers = torch.load(workdir / "saves" / "mode_sparse_wt0.01" / "task_identifiers.pth")
    assert list(identifiers) == [0]  # one joint task, whose kept components every task is evaluated with


def test_single_tasks_reports_every_task_evaluated_right_after_it_was_trained(workdir, cifar10_root, capsys):
    record, _ = run(workdir, capsys, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--single_tasks")
    rows = record["acc_matrix"]
    assert [list(row) for row in rows.values()] == [[name] for name in rows]
    assert record["acc"] == {name: rows[name][name] for name in rows} and len(record["acc"]) == 2
    assert record["avg_acc"] == pytest.approx(sum(record["acc"].values()) / 2)


def test_incremental_class_grows_the_valid_outputs_of_one_shared_head(workdir, cifar10_root, capsys, monkeypatch):
    """One head of 10 outputs; while task k trains and is evaluated only the outputs of the classes of tasks 1..k
    count: every prediction falls among them."""
    valid, predictions = [], []
    valid_logits = NormalNN.valid_logits

    def recording(agent, logits, task):
        counted = valid_logits(agent, logits, task)
        valid.append(counted.shape[1])
        predictions.append((counted.shape[1], int(counted.argmax(1).max())))
        return counted

    monkeypatch.setattr(NormalNN, "valid_logits", recording)
    record, _ = run(workdir, capsys, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--incremental_class",
                    "--force_out_dim", "10", "--no_class_remap", "--no_rand_split_order")
    state = torch.load(workdir / "saves" / "mode_sparse_wt0.01" / "final_model.pth")
    assert state["last.All.0.weight"].shape[0] == 10 and "last.1.0.weight" not in state
    assert len(record["acc"]) == 2
    assert sorted(set(valid)) == [5, 10] and valid.index(10) > valid.index(5) and valid[-1] == 10
    assert valid[:valid.index(10)] == [5] * valid.index(10)  # task 1, trained and evaluated, before task 2
    assert all(highest < width for width, highest in predictions)


def training_accuracies(workdir, dataroot):
    """Each task's accuracy recomputed here from the saved model on the training split of CIFAR-10:
    its own prefix of components and its own head, in float64 on plain NCHW tensors."""
    saves = workdir / "saves" / "mode_sparse_wt0.01"
    state = torch.load(saves / "final_model.pth")
    identifiers, order = torch.load(saves / "task_identifiers.pth"), torch.load(saves / "task_name_count.pth")
    model = build_model("customnet_SVD", "Net_SVD", rank=torch.load(saves / "rank.pth"))
    model.add_heads({task: 5 for task in order})
    model.load_state_dict(state)
    model.double().eval()
    images = CIFAR10(dataroot)[0]
    accuracies = {}
    for task, index in order.items():
        classes = torch.arange(5) + 5 * (int(task) - 1)
        chosen = torch.isin(images.labels, classes)
        inputs = images.transform(images.images[chosen]).double()
        with torch.no_grad():
            predicted = model(inputs, task, identifiers[index]).argmax(1)
        accuracies[task] = 100.0 * float((predicted == images.labels[chosen] - 5 * (int(task) - 1)).double().mean())
    return accuracies


def test_eval_on_train_set_reports_training_accuracy(workdir, cifar10_root, capsys, monkeypatch):
    """Without augmentation (which, as published, the training split keeps when it is evaluated). The tiny files
    hold 50 training and 20 test images a task."""
    evaluated = []
    eval_loader = TaskStream.eval_loader

    def counting(stream, name):
        loader = eval_loader(stream, name)
        evaluated.append(len(loader.targets))
        return loader

    monkeypatch.setattr(TaskStream, "eval_loader", counting)
    record, _ = run(workdir, capsys, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--eval_on_train_set",
                    "--no_train_aug")
    assert evaluated and set(evaluated) == {50}
    assert record["acc"] == pytest.approx(training_accuracies(workdir, cifar10_root))


def test_permuted_mnist_tasks(workdir, mnist_root, capsys):
    record, _ = run(workdir, capsys, "--dataset", "MNIST", "--dataroot", mnist_root, "--n_permutation", "3")
    assert sorted(record["acc"]) == ["1", "2", "3"]


def test_each_permuted_task_is_the_images_under_its_own_published_permutation(mnist_root):
    """As published: seeded, one ``random.shuffle`` of the 3·32·32 input values per task, task 1's discarded."""
    config = read_config([*QUICK, "--dataset", "MNIST", "--dataroot", mnist_root, "--n_permutation", "3"])
    seed_everything(config.protocol.seed)
    tasks = make_tasks(config, load_data(config.data), torch.device("cpu"))
    random.seed(config.protocol.seed)
    drawn = []
    for _ in range(3):
        order = list(range(3 * 32 * 32))
        random.shuffle(order)
        drawn.append(torch.tensor(order))
    plain = network_inputs(tasks.stream.train["1"]).flatten(1)
    for task, permutation in (("2", drawn[1]), ("3", drawn[2])):
        data = tasks.stream.train[task]
        assert torch.equal(network_inputs(data).flatten(1), plain[:, permutation])
        assert torch.equal(data.targets, tasks.stream.train["1"].targets)
    assert not torch.equal(drawn[1], drawn[2])


def network_inputs(data):
    return data.transform(data.images)


def test_vgg16_bn_svd_with_per_task_running_stats(workdir, cifar10_root, capsys):
    record, _ = run(workdir, capsys, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--model_type", "vgg_16_bn",
                    "--model_name", "vgg16_bn_cifar100_SVD", "--save_running_stats")
    assert len(record["all_rank"]) == 13
    saves = workdir / "saves" / "mode_sparse_wt0.01"
    state = torch.load(saves / "final_model.pth")
    assert state["last.1.0.weight"].shape == (32, 512) and state["last.1.1.weight"].shape == (5, 32)
    # batchnorm.pth as published: {task index: [[running_var, running_mean, num_batches_tracked] per layer]}
    statistics, order = torch.load(saves / "batchnorm.pth"), torch.load(saves / "task_name_count.pth")
    assert sorted(statistics) == sorted(order.values()) == [0, 1] and not (saves / "running_stats.pth").exists()
    assert all(len(layers) == 13 and all(len(buffers) == 3 for buffers in layers) for layers in statistics.values())
    var, mean, batches = statistics[0][0]
    assert var.shape == mean.shape == (64,) and bool((var > 0).all()) and batches.dtype == torch.int64
    assert not torch.equal(statistics[0][0][1], statistics[1][0][1])
    # evaluated again from the saved files, each task with its own statistics: the accuracies it finished with
    status = iBatchLearn.main([*QUICK, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--model_type",
                               "vgg_16_bn", "--model_name", "vgg16_bn_cifar100_SVD", "--loadmodel", str(saves)])
    assert status == 0
    evaluated = json.loads((workdir / "results" / "mode_sparse_wt0.01" / "output_eval.json").read_text())
    assert evaluated["acc"] == record["acc"]


def test_sparsity_search_writes_the_figure(workdir, cifar10_root, capsys):
    status = iBatchLearn.main([*QUICK, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--debug",
                               "-sp_wt_search", "0.1", "0.9"])
    assert status == 0
    points = json.loads((workdir / "results" / "mode_sp_wt_search" / "sp_wt_search.json").read_text())
    assert [round(p["value"], 4) for p in points] == [round(0.1 + 0.8 * i / 9, 4) for i in range(10)]
    assert (workdir / "results" / "mode_sp_wt_search" / "sp_wt_search.png").stat().st_size > 1000


def test_energy_search_prunes_one_model_twenty_ways(workdir, cifar10_root, capsys):
    model = build_model("customnet_SVD", "Net_SVD")
    model.add_heads({"1": 5, "2": 5})
    torch.save(model.state_dict(), workdir / "weights.pth")
    status = iBatchLearn.main([*QUICK, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--debug",
                               "-e_search", "3e-5", "3e-2", "--model_weights", str(workdir / "weights.pth")])
    assert status == 0
    points = json.loads((workdir / "results" / "mode_e_search" / "e_search.json").read_text())
    assert [p["value"] for p in points] == pytest.approx(list(np.linspace(3e-5, 3e-2, 20)))  # linear, as published
    components = [p["components"] for p in points]
    assert components == sorted(components, reverse=True) and components[0] > components[-1]
    macs = [p["macs"] for p in points]  # fewer components never cost more multiply-adds
    assert macs == sorted(macs, reverse=True) and macs[0] > macs[-1]
    assert (workdir / "results" / "mode_e_search" / "e_search.png").is_file()
