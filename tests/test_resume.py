"""Never lose a run: checkpoints while training, ``--resume`` bit-identical to an uninterrupted run, no clobbering."""
import dataclasses
import io
import os
import signal
import time
from pathlib import Path

import pytest
import torch

import experiment.run
import experiment.training
import iBatchLearn
from agents import agent_class, agent_types
from agents.SVDNet import SVDNet, SVDNetSettings
from helpers import (assert_same_outputs, assert_state_saved_mid_task_continues_exactly, kill_after, outputs,
                     run_driver, start, svd_agent)
from dataloaders import BatchTransform, TaskData, TaskLoader
from experiment.checkpoints import Position, RunCheckpoints
from experiment.config import read_config
from models import build_model
from utils.runtime import restore_rng, rng_state

CHECKPOINTS = Path("saves") / "sweep" / "checkpoints"


def run_flags(dataroot):
    """2 experiments (--sparse_wt) x 2 repeats x 2 tasks x 2 epochs (lr drop after the first), augmentation on:
    a checkpoint after every epoch, task, repeat and experiment, 7 per repeat."""
    return ["--gpuid", "-1", "--dataset", "CIFAR10", "--dataroot", dataroot, "--first_split_size", "5",
            "--other_split_size", "5", "--schedule", "1", "2", "--batch_size", "10", "--repeat", "2",
            "--sparse_wt", "0.01", "0.4", "--grow_network", "-e", "0.01", "--print_freq", "1000",
            "--exp_name", "sweep", "--checkpoint_interval", "0"]


def kill_after_checkpoint(workdir: Path, flags, number: int, *extra) -> None:
    kill_after(workdir, CHECKPOINTS, flags, number, *extra)


def position_in(workdir: Path, number: int) -> Position:
    """The position checkpoint ``number`` holds (the process may have gone a little further before it died)."""
    path = RunCheckpoints(str(workdir / CHECKPOINTS), {}).path(number)
    return Position.from_dict(torch.load(path, weights_only=True)["position"])


def test_killed_run_resumes_to_exactly_the_uninterrupted_results(tmp_path, cifar10_root):
    flags = run_flags(cifar10_root)
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    reference.mkdir(), interrupted.mkdir()
    uninterrupted = start(reference, flags)
    table, err = uninterrupted.communicate()
    assert uninterrupted.returncode == 0, err

    # checkpoints 1-7 are repeat 0 of sparse_wt 0.01: task 1 epochs 1-2, task 1, task 2 epochs 1-2, task 2, repeat
    kill_after_checkpoint(interrupted, flags, 1)  # in task 1's second epoch
    position = position_in(interrupted, 1)
    assert position.progress.agents[0]["in_task"]["epochs_done"] == 1 and position.progress.tasks_done == 0
    kill_after_checkpoint(interrupted, flags, 3, "--resume")  # between tasks
    position = position_in(interrupted, 3)
    assert position.progress.tasks_done == 1 and position.progress.agents[0]["in_task"] is None
    kill_after_checkpoint(interrupted, flags, 7, "--resume")  # between repeats
    position = position_in(interrupted, 7)
    assert (position.repeat, position.progress.agents) == (1, [])
    kill_after_checkpoint(interrupted, flags, 15, "--resume")  # between the two --sparse_wt experiments
    position = position_in(interrupted, 15)
    assert (position.experiment_index, position.repeat, list(position.finished)) == (1, 0, ["sweep_sparse_wt0.01"])
    assert len(list((interrupted / CHECKPOINTS).glob("checkpoint-*.pth"))) == 3  # only the latest few are kept

    resumed = start(interrupted, flags, "--resume")
    resumed_table, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert_same_outputs(outputs(reference), outputs(interrupted))
    assert resumed_table == table and "sweep_sparse_wt0.01" in table and "sweep_sparse_wt0.4" in table
    assert not (interrupted / "saves" / "sweep").exists()  # a finished sweep leaves no checkpoints behind


def test_sigterm_stops_cleanly_and_leaves_a_resumable_run(tmp_path, cifar10_root):
    flags = run_flags(cifar10_root)
    process = start(tmp_path, flags)
    first = tmp_path / CHECKPOINTS / "checkpoint-000001.pth"
    deadline = time.monotonic() + 300
    while not first.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err and "--resume" in err.splitlines()[-1]
    assert not (tmp_path / "saves" / "sweep" / "run.lock").exists()
    assert RunCheckpoints(str(tmp_path / CHECKPOINTS), {}).latest() is not None
    assert not list((tmp_path / CHECKPOINTS).glob(".tmp-*"))


def quick_flags(dataroot, *extra):
    return ["--gpuid", "-1", "--dataset", "CIFAR10", "--dataroot", dataroot, "--schedule", "1", "--batch_size", "25",
            "--repeat", "2", "--exp_name", "sweep", "--print_freq", "1000", *extra]


def test_same_seed_twice_gives_identical_results(tmp_path, monkeypatch, cifar10_root, capsys):
    runs = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        status, table, _ = run_driver(capsys, *quick_flags(cifar10_root, "--first_split_size", "2",
                                                           "--other_split_size", "2"))
        assert status == 0
        runs.append((outputs(tmp_path / name), table))
    assert_same_outputs(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert runs[0][0]["results/sweep_sparse_wt0.01/output_final.json"]["repeats"] == 2


@pytest.fixture
def interrupted(workdir, cifar10_root, capsys, monkeypatch):
    """A run stopped (by an exception) after its first repeat's last checkpoint, before its outputs were written."""
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(experiment.training, "save_agents", crash)
        assert iBatchLearn.main(quick_flags(cifar10_root)) == 130
    assert "--resume" in capsys.readouterr().err
    assert RunCheckpoints(str(CHECKPOINTS), {}).numbers()
    return workdir


def test_interrupted_run_is_not_restarted_over_without_a_flag(interrupted, cifar10_root, capsys):
    before = sorted(os.listdir(CHECKPOINTS))
    status, _, err = run_driver(capsys, *quick_flags(cifar10_root))
    assert status == 2 and "--resume" in err and "--overwrite" in err
    assert sorted(os.listdir(CHECKPOINTS)) == before


@pytest.mark.parametrize("change, named", [
    (["--dataset", "MNIST"], "--dataset CIFAR10 (now MNIST)"),
    (["--first_split_size", "2", "--other_split_size", "2"], "--first_split_size 5 (now 2)"),
    (["--sparse_wt", "0.4"], "--sparse_wt 0.01 (now 0.4)"),
    (["--schedule", "2"], "--schedule 1 (now 2)"),
])
def test_resume_with_other_settings_names_them(interrupted, cifar10_root, mnist_root, capsys, change, named):
    dataroot = mnist_root if "MNIST" in change else cifar10_root
    before = outputs(interrupted), sorted(os.listdir(CHECKPOINTS))
    status, _, err = run_driver(capsys, *quick_flags(dataroot, *change), "--resume")
    assert status == 2 and err.count("\n") == 1 and named in err
    assert_same_outputs(before[0], outputs(interrupted))
    assert sorted(os.listdir(CHECKPOINTS)) == before[1]


def test_resume_stops_when_the_task_order_is_not_the_checkpoints(interrupted, cifar10_root, capsys, monkeypatch):
    """The order is recomputed from the seed; were it to come out otherwise (another version of the code), the
    resumed run would train the wrong tasks."""
    make_tasks = experiment.run.make_tasks

    def reversed_order(*args, **kwargs):
        tasks = make_tasks(*args, **kwargs)
        tasks.stream.names = tasks.stream.names[::-1]
        return tasks

    monkeypatch.setattr(experiment.run, "make_tasks", reversed_order)
    status, _, err = run_driver(capsys, *quick_flags(cifar10_root), "--resume")
    assert status == 2 and "task order" in err


def test_resume_finishes_the_interrupted_run(interrupted, cifar10_root, capsys):
    status, table, _ = run_driver(capsys, *quick_flags(cifar10_root), "--resume")
    assert status == 0 and "sweep_sparse_wt0.01 (2 runs)" in table
    assert sorted(os.listdir("results/sweep_sparse_wt0.01")) == [
        "eval_results_run0.csv", "eval_results_run1.csv", "output_final.json", "output_run0.json", "output_run1.json",
        "training_results_run0.csv", "training_results_run1.csv"]
    assert not CHECKPOINTS.exists()


def test_overwrite_discards_an_interrupted_run(interrupted, cifar10_root, capsys):
    status, _, _ = run_driver(capsys, *quick_flags(cifar10_root, "--repeat", "1"), "--overwrite")
    assert status == 0 and not CHECKPOINTS.exists()


def test_resume_without_a_checkpoint_starts_from_the_beginning(workdir, cifar10_root, capsys):
    status, table, _ = run_driver(capsys, *quick_flags(cifar10_root, "--repeat", "1"), "--resume")
    assert status == 0 and "sweep_sparse_wt0.01 (1 run)" in table


SETTINGS = {"schedule": [1, 3], "grow_network": True}


def small_agent():
    return svd_agent(tasks=("1", "2"), **SETTINGS)


class Interrupt(Exception):
    pass


def reshuffled_batches(task):
    """Three random batches, reshuffled every epoch from the global generator (as the training loader does)."""
    generator = torch.Generator().manual_seed(int(task))
    data = [(torch.randn(6, 3, 32, 32, generator=generator), torch.randint(0, 2, (6,), generator=generator),
             [task] * 6) for _ in range(3)]

    class Loader:
        def __iter__(self):
            return iter([data[i] for i in torch.randperm(len(data)).tolist()])

    return Loader()


def test_agent_state_saved_mid_task_continues_bit_identically():
    reference = small_agent()
    reference.learn_task("1", reshuffled_batches("1"))
    reference.learn_task("2", reshuffled_batches("2"))

    agent = small_agent()
    agent.learn_task("1", reshuffled_batches("1"))
    saved = {}

    def interrupt_after_second_epoch():
        if agent.epochs_done == 2:
            buffer = io.BytesIO()
            torch.save({"agent": agent.training_state(), "rng": rng_state()}, buffer)
            saved["bytes"] = buffer.getvalue()
            raise Interrupt

    with pytest.raises(Interrupt):
        agent.learn_task("2", reshuffled_batches("2"), on_epoch=lambda report: interrupt_after_second_epoch())

    checkpoint = torch.load(io.BytesIO(saved["bytes"]), weights_only=True)
    ranks = [checkpoint["agent"]["model"][f"{name}.Sigma"].shape[0] for name in ("conv1", "conv2", "conv3", "conv4",
                                                                                 "conv6")]
    model = build_model("customnet_SVD", "Net_SVD", rank=ranks)
    model.add_heads({"1": 2, "2": 2})
    resumed = SVDNet(model, SVDNetSettings(print_freq=1000, **SETTINGS))
    resumed.load_training_state(checkpoint["agent"])
    restore_rng(checkpoint["rng"])
    resumed.learn_task("2", reshuffled_batches("2"))
    assert resumed.tasks_trained == ["1", "2"] and resumed.task_identifiers == reference.task_identifiers
    state, expected = resumed.model.state_dict(), reference.model.state_dict()
    assert list(state) == list(expected)
    for key in expected:
        assert torch.equal(state[key], expected[key]), key


def baseline_agent(agent_type, agent_name):
    """A baseline on the dense ``Net`` with heads "1" and "2", built from seed 0; 2 epochs a task."""
    torch.manual_seed(0)
    model = build_model("customnet", "Net")
    model.add_heads({"1": 2, "2": 2})
    cls = agent_class(agent_type, agent_name)
    own = {name: value for name, value in (("reg_coef", 10.0), ("memory_size", 4))
           if name in {field.name for field in dataclasses.fields(cls.Settings)}}
    return cls(model, cls.Settings(schedule=[1, 2], print_freq=1000, **own))


def task_loader(task):
    """12 random images of two classes, reshuffled every epoch from the global generator."""
    generator = torch.Generator().manual_seed(int(task))
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=generator)
    data = TaskData(task, images, torch.randint(0, 2, (12,), generator=generator), BatchTransform([0.5], [0.25]))
    return TaskLoader(data, 6, shuffle=True)


@pytest.mark.parametrize("agent_type, agent_name", [(agent_type, name) for agent_type in ("default", "regularization",
                                                                                          "exp_replay")
                                                    for name in agent_types()[agent_type]])
def test_every_agents_state_saved_mid_task_continues_bit_identically(agent_type, agent_name):
    """Saved (as a checkpoint is: weights only) after task 2's first epoch, after task 1's importances, anchors and
    memory were made, and continued by a fresh agent: the same model and the same state as an uninterrupted run."""
    assert_state_saved_mid_task_continues_exactly(lambda: baseline_agent(agent_type, agent_name), loader=task_loader)


def test_only_the_latest_checkpoints_are_kept_and_a_damaged_latest_is_skipped(tmp_path, caplog):
    checkpoints = RunCheckpoints(str(tmp_path / "checkpoints"), read_config(["--exp_name", "x"]).flags, keep=2)
    for repeat in range(4):
        checkpoints.save(Position(repeat=repeat))
    (tmp_path / "checkpoints" / ".tmp-half-written.pth").write_bytes(b"\0")
    assert checkpoints.numbers() == [3, 4]
    assert checkpoints.latest()["position"].repeat == 3
    Path(checkpoints.path(4)).write_bytes(Path(checkpoints.path(4)).read_bytes()[:100])
    assert checkpoints.latest()["position"].repeat == 2
    assert "skipping unreadable checkpoint" in caplog.text


def test_end_of_epoch_checkpoints_wait_for_the_interval_but_ends_of_tasks_do_not(tmp_path):
    flags = read_config(["--exp_name", "x"]).flags
    hourly = RunCheckpoints(str(tmp_path / "hourly"), flags, interval=3600)
    hourly.save(Position(), optional=True)
    assert hourly.numbers() == []
    hourly.save(Position())
    hourly.save(Position(), optional=True)
    assert hourly.numbers() == [1]
    every_epoch = RunCheckpoints(str(tmp_path / "every"), flags, interval=0)
    every_epoch.save(Position(), optional=True)
    assert every_epoch.numbers() == [1]


@pytest.mark.parametrize("protocol, stop_after", [
    ([], 4),
    (["--ind_models", "--task_agnostic"], 4),
    (["--offline_training"], 1),
    (["--incremental_class", "--force_out_dim", "10", "--no_class_remap", "--no_rand_split_order"], 4),
], ids=["sequential", "ind_models-task_agnostic", "offline_training", "incremental_class"])
def test_every_protocol_resumes_exactly(tmp_path, monkeypatch, cifar10_root, capsys, protocol, stop_after):
    assert_stopped_run_resumes_exactly(tmp_path, monkeypatch, cifar10_root, capsys, protocol, stop_after)


DENSE = ["--model_type", "customnet", "--model_name", "Net"]


@pytest.mark.parametrize("agent", [
    ["--agent_type", "regularization", "--agent_name", "EWC", "--reg_coef", "10"],
    [*DENSE, "--agent_type", "exp_replay", "--agent_name", "Naive_Rehearsal_SI", "--reg_coef", "10",
     "--memory_size", "30"],
    [*DENSE, "--agent_type", "exp_replay", "--agent_name", "GEM", "--reg_coef", "0.5", "--memory_size", "30"],
], ids=["EWC-on-Net_SVD", "Naive_Rehearsal_SI", "GEM"])
def test_baseline_runs_resume_exactly(tmp_path, monkeypatch, cifar10_root, capsys, agent):
    """Stopped in the first epoch of task 2, after task 1's anchors, importances and memory were made (every
    agent's own state is checked by ``test_every_agents_state_saved_mid_task_continues_bit_identically``)."""
    assert_stopped_run_resumes_exactly(tmp_path, monkeypatch, cifar10_root, capsys, agent, 4)


def assert_stopped_run_resumes_exactly(tmp_path, monkeypatch, cifar10_root, capsys, extra, stop_after):
    """A run of 2 tasks x 2 epochs stopped right after checkpoint ``stop_after`` and resumed gives the outputs and
    the table of an uninterrupted run."""
    flags = quick_flags(cifar10_root, "--repeat", "1", "--schedule", "1", "2", "--checkpoint_interval", "0", *extra)
    (tmp_path / "reference").mkdir(), (tmp_path / "interrupted").mkdir()
    monkeypatch.chdir(tmp_path / "reference")
    status, table, _ = run_driver(capsys, *flags)
    assert status == 0

    monkeypatch.chdir(tmp_path / "interrupted")
    save = RunCheckpoints.save

    def save_then_stop(self, *args, **kwargs):
        save(self, *args, **kwargs)
        if self.numbers()[-1] == stop_after:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(RunCheckpoints, "save", save_then_stop)
        assert iBatchLearn.main(flags) == 130
    status, resumed_table, _ = run_driver(capsys, *flags, "--resume")
    assert status == 0
    assert_same_outputs(outputs(tmp_path / "reference"), outputs(tmp_path / "interrupted"))
    assert resumed_table == table


def test_a_second_process_on_the_same_experiment_stops(workdir, cifar10_root, capsys):
    import fcntl

    lock = workdir / "saves" / "sweep" / "run.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        held.write("pid 12345")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status, _, err = run_driver(capsys, *quick_flags(cifar10_root, "--repeat", "1"))
    assert status == 2 and "another process (pid 12345) is training --exp_name sweep" in err
    assert not (workdir / "results").exists()
    status, _, _ = run_driver(capsys, *quick_flags(cifar10_root, "--repeat", "1"))  # released: runs
    assert status == 0 and not (workdir / "saves" / "sweep").exists()
