"""A run's numbers where researchers look at them: CSV files in its results folder, equal to its results JSON and
continued exactly by ``--resume``; and Weights & Biases (``--wandb_project``, tested offline, reading back what the
run wrote): every flag, the losses, the accuracy matrix and the final metrics, one W&B run continued across a
resume, the jobs of a sweep grouped by the sweep."""
import csv
import json
import os
import signal
import struct
import time
from pathlib import Path

import pytest
import torch

import cluster.sweep
from dataloaders.synthetic import write_synthetic_image_folder
from evaluation.loggers import CSVLogger
from experiment.config import command_line
from helpers import QUICK, assert_same_outputs, outputs, run_driver, start

LOG_BLOCK = 32768
"""The block size of W&B's run files (LevelDB's log format)."""


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """W&B offline, its caches and the image cache in the test's folder (in every process the test starts)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for variable, folder in (("WANDB_CACHE_DIR", "wandb-cache"), ("WANDB_CONFIG_DIR", "wandb-config"),
                             ("WANDB_DATA_DIR", "wandb-data"), ("CACL_CACHE_DIR", "cache")):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    monkeypatch.delenv("WANDB_DIR", raising=False)


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (``run-<id>.wandb``): after a 7-byte header, LevelDB's log format, 32 KiB blocks
    of chunks, each a 7-byte header (checksum, length, type: 1 whole, 2 first, 3 middle, 4 last) and its bytes; a
    record is the bytes of one whole chunk or of a first to a last, a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending, records = path.read_bytes(), 7, b"", []
    assert data.startswith(b":W&B")
    while position + 7 <= len(data):
        if LOG_BLOCK - position % LOG_BLOCK < 7:  # a block's tail too short for a header is padding
            position += LOG_BLOCK - position % LOG_BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:
            position += LOG_BLOCK - position % LOG_BLOCK
            continue
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def items(entries) -> dict:
    """W&B's key-value entries as a dict: a key is ``key``, or its ``nested_key`` parts joined by "/"."""
    return {entry.key or "/".join(entry.nested_key): json.loads(entry.value_json) for entry in entries}


def wandb_run(directory: Path) -> dict:
    """What one offline W&B run directory holds: its ``id``, ``group``, ``config``, ``history`` rows, the last value of
    each ``summary`` key, and its tables by name."""
    records = wandb_records(next(directory.glob("run-*.wandb")))
    run = {"config": {}, "history": [], "summary": {}, "tables": {}}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"], run["group"] = record.run.run_id, record.run.run_group
        elif kind == "config":
            run["config"].update(items(record.config.update))
        elif kind == "history":
            run["history"].append(items(record.history.item))
        elif kind == "summary":
            run["summary"].update(items(record.summary.update))
    for table in (directory / "files" / "media" / "table").glob("*.table.json"):
        run["tables"][table.name.rsplit("_", 2)[0]] = json.loads(table.read_text())
    return run


def logged_accuracies(run: dict, record: dict, prefix: str = "accuracy/") -> dict:
    """The accuracies a W&B run logged after each task under ``prefix`` (``<prefix>task_<name>``), as the accuracy
    matrix of ``record`` holds them (by task learnt, then task evaluated); each row's model size is checked against
    ``record``'s."""
    accuracies = {}
    for row in run["history"]:
        if "tasks_learnt" in row:
            trained = row["task_trained"]
            accuracies[trained] = {key[len(prefix + "task_"):]: value for key, value in row.items()
                                   if key.startswith(prefix + "task_")}
            assert row["model_size"] == record["model_size_after_task"][trained]
    return accuracies


def read_csv(path: Path) -> list:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_a_new_loss_term_widens_the_csv_and_a_resumed_logger_keeps_its_checkpoints_rows(tmp_path):
    logger = CSVLogger(str(tmp_path), 2)
    logger.log_losses("3", 1, 10, {"ce": 0.5, "loss": 0.5})
    logger.log_accuracies("3", 1, {"3": 75.0}, 1.25)
    state = logger.state()
    logger.log_losses("1", 1, 20, {"ce": 0.25, "penalty": 0.125, "loss": 0.375})
    logger.log_accuracies("1", 2, {"3": 70.0, "1": 90.5}, 1.5)
    training, evaluation = tmp_path / "training_results_run2.csv", tmp_path / "eval_results_run2.csv"
    assert training.read_text() == ("repeat,task,epoch,step,ce,loss,penalty\n2,3,1,10,0.5,0.5,\n"
                                    "2,1,1,20,0.25,0.375,0.125\n")
    assert evaluation.read_text() == ("repeat,task_trained,task_evaluated,accuracy,model_size\n2,3,3,75.0,1.25\n"
                                      "2,1,3,70.0,1.5\n2,1,1,90.5,1.5\n")

    assert state == {"rows": {"eval": 1, "training": 1}}
    resumed = CSVLogger(str(tmp_path), 2, state)  # a resumed run: the rows after its checkpoint are cut
    assert training.read_text() == "repeat,task,epoch,step,ce,loss,penalty\n2,3,1,10,0.5,0.5,\n"
    assert evaluation.read_text() == "repeat,task_trained,task_evaluated,accuracy,model_size\n2,3,3,75.0,1.25\n"
    resumed.log_losses("1", 1, 20, {"ce": 0.25, "penalty": 0.125, "loss": 0.375})
    assert read_csv(training)[-1] == {"repeat": "2", "task": "1", "epoch": "1", "step": "20", "ce": "0.25",
                                      "loss": "0.375", "penalty": "0.125"}
    CSVLogger(str(tmp_path), 2)  # a fresh start of the repeat
    assert len(read_csv(training)) == len(read_csv(evaluation)) == 0


def sequence_flags(tmp_path: Path, mnist_root: str) -> list:
    """Three tasks of 3 epochs: two image folders (3 classes of 40×40 RGB images resized to 32; 3 classes of grey
    images) and MNIST; every step logged, checkpoints only at the ends of tasks."""
    write_synthetic_image_folder(str(tmp_path / "data" / "colour"), num_classes=3, n_train_per_class=10, size=40)
    write_synthetic_image_folder(str(tmp_path / "data" / "grey"), num_classes=3, n_train_per_class=10, channels=1,
                                 seed=4)
    spec = tmp_path / "data" / "spec.json"
    spec.write_text(json.dumps([{"dataset": "ImageFolder", "dataroot": "colour"},
                                {"dataset": "ImageFolder", "dataroot": "grey"},
                                {"dataset": "MNIST", "dataroot": mnist_root}]))
    return ["--gpuid", "-1", "--dataset", "sequence", "--dataroot", str(spec), "--schedule", "3", "--batch_size", "6",
            "--max_train_samples", "30", "--repeat", "1", "--print_freq", "1", "--no_rand_split_order",
            "--checkpoint_interval", "1000", "--exp_name", "seq"]


def kill_in_task_2(workdir: Path, flags) -> None:
    """Run until task 2 has logged the steps of its first epoch, then SIGKILL: its last checkpoint is the end of
    task 1, so the steps logged since must not stay in the CSV files."""
    process = start(workdir, flags)
    training = workdir / "results" / "seq_sparse_wt0.01" / "training_results_run0.csv"
    deadline = time.monotonic() + 300
    while not (training.exists() and any(row["task"] == "2" for row in read_csv(training))):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "task 2 did not start in time"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoints = workdir / "saves" / "seq" / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["checkpoint-000001.pth"], "killed too late: task 2 had ended"


def test_a_sequence_of_two_image_folders_and_mnist_resumes_bit_identically_with_its_csv_and_wandb_run(
        tmp_path, mnist_root, monkeypatch, capsys):
    flags = sequence_flags(tmp_path, mnist_root)
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    reference.mkdir(), interrupted.mkdir()
    monkeypatch.chdir(reference)
    status, table, err = run_driver(capsys, *flags)
    assert status == 0, err

    dashboards = ["--wandb_project", "cacl-test"]
    kill_in_task_2(interrupted, [*flags, *dashboards])
    resumed = start(interrupted, [*flags, *dashboards, "--resume"])
    resumed_table, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert resumed_table == table
    assert_same_outputs(outputs(reference), outputs(interrupted))

    results = Path("results") / "seq_sparse_wt0.01"
    state = torch.load(reference / "saves" / "seq_sparse_wt0.01" / "final_model.pth")
    heads = {name.split(".")[1]: tensor.shape[0] for name, tensor in state.items()
             if name.startswith("last.") and name.endswith(".bias")}
    assert heads == {"1": 3, "2": 3, "3": 10}  # a head per dataset, of its classes

    # the CSV files: those of the uninterrupted run, holding every accuracy of the results JSON
    for name in ("eval_results_run0.csv", "training_results_run0.csv"):
        assert (interrupted / results / name).read_bytes() == (reference / results / name).read_bytes()
    record = json.loads((reference / results / "output_run0.json").read_text())
    rows = read_csv(reference / results / "eval_results_run0.csv")
    assert [(row["task_trained"], row["task_evaluated"], float(row["accuracy"]), float(row["model_size"]))
            for row in rows] == [(trained, evaluated, accuracy, record["model_size_after_task"][trained])
                                 for trained, accuracies in record["acc_matrix"].items()
                                 for evaluated, accuracy in accuracies.items()]
    steps = read_csv(reference / results / "training_results_run0.csv")
    assert [int(row["step"]) for row in steps] == list(range(1, 46))  # 3 tasks, 3 epochs, 5 steps: each once
    assert {"ce", "sparsity", "orthogonality", "loss"} <= set(steps[0])

    # W&B: one run, continued after the kill (offline, what the killed process logged is lost with it)
    killed, resumed_run = sorted((interrupted / "wandb").glob("offline-run-*"))
    continued = wandb_run(resumed_run)
    assert killed.name.endswith(continued["id"]) and continued["group"] == "seq"
    expected = vars(command_line().parse_args([*flags, *dashboards, "--resume"]))
    expected.update(sparse_wt=0.01, experiment="seq_sparse_wt0.01", repeat_index=0)
    assert {key: continued["config"][key] for key in expected} == expected
    assert logged_accuracies(continued, record) == {task: record["acc_matrix"][task] for task in ("2", "3")}
    assert continued["tables"]["accuracy_matrix"]["data"] == [
        [trained, evaluated, accuracy, record["model_size_after_task"][trained]]
        for trained, row in record["acc_matrix"].items() for evaluated, accuracy in row.items()]
    for key in ("avg_acc", "bwt", "forgetting", "model_size"):
        assert continued["summary"][key] == record[key]
    logged = {row["train/step"]: row["train/loss"] for row in continued["history"] if "train/step" in row}
    assert logged == {int(row["step"]): float(row["loss"]) for row in steps if row["task"] != "1"}


def test_the_jobs_of_a_sweep_are_one_wandb_group_named_after_the_sweep(workdir, cifar10_root, capsys):
    status = cluster.sweep.main([*QUICK, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--first_split_size",
                                 "5", "--other_split_size", "5", "--repeat", "2", "--exp_name", "swept",
                                 "--wandb_project", "cacl-test", "--cluster", "debug", "--sweep_dir", "nightly",
                                 "--task_agnostic"])
    assert status == 0, capsys.readouterr().err
    runs = [wandb_run(path) for path in sorted((workdir / "wandb").glob("offline-run-*"))]
    assert [run["group"] for run in runs] == ["nightly", "nightly"] and len({run["id"] for run in runs}) == 2
    assert sorted(run["config"]["repeat_index"] for run in runs) == [0, 1]
    for run in runs:
        record = json.loads((workdir / "results" / "swept_sparse_wt0.01" /
                             f"output_run{run['config']['repeat_index']}.json").read_text())
        assert logged_accuracies(run, record) == record["acc_matrix"]  # each task's accuracy after each task
        assert {key: run["summary"][key] for key in ("avg_acc", "bwt", "forgetting")} == {
            key: record[key] for key in ("avg_acc", "bwt", "forgetting")}
        for rule, entry in record["task_agnostic"].items():  # and without the task label, by every rule
            assert logged_accuracies(run, record, f"task_agnostic/{rule}/") == entry["acc_matrix"]
            assert logged_accuracies(run, record, f"task_id/{rule}/") == entry["task_id_matrix"]
            assert {key: run["summary"][f"task_agnostic/{rule}/{key}"] for key in ("avg_acc", "task_id_acc")} == {
                key: entry[key] for key in ("avg_acc", "task_id_acc")}
