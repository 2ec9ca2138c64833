"""A write the system refuses (a full disk, a read-only filesystem, a quota) is a one-line error naming the file and
what to do, leaves no partial file, and a run stopped by one resumes to the uninterrupted run's outputs."""
import errno
import os

import pytest
import torch

import experiment.checkpoints
from helpers import QUICK, assert_same_outputs, outputs, run_driver
from utils.errors import UserError
from utils.files import _atomic_write, atomic_json_dump, atomic_torch_save


def torch_writer_out_of_space(stream):
    """What torch's zip writer does on a full disk: some bytes written, then a ``RuntimeError`` raised while
    handling the system's ``OSError``."""
    stream.write(b"PK\x03\x04 half a checkpoint")
    try:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 704 vs 598")


def test_a_full_disk_inside_torchs_writer_is_one_line_and_leaves_no_file(tmp_path):
    path = tmp_path / "saves" / "checkpoint-000002.pth"
    with pytest.raises(UserError) as error:
        _atomic_write(str(path), torch_writer_out_of_space)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "No space left on device" in message
    assert "free space" in message and "--resume" in message
    assert os.listdir(path.parent) == []


def test_a_read_only_folder_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(UserError, match="cannot write .*output_run0.json: Read-only file system"):
        atomic_json_dump({"acc": {}}, str(tmp_path / "results" / "output_run0.json"))


def test_a_bug_in_the_writer_is_not_mistaken_for_a_full_disk(tmp_path):
    def bug(stream):
        raise ValueError("not a write error")

    with pytest.raises(ValueError):
        _atomic_write(str(tmp_path / "x.json"), bug)
    assert os.listdir(tmp_path) == []


def test_outputs_are_readable_as_the_umask_allows(tmp_path):
    atomic_torch_save({"x": torch.zeros(1)}, str(tmp_path / "model.pth"))
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "model.pth").st_mode & 0o777 == 0o666 & ~mask


def test_a_run_stopped_by_a_full_disk_resumes_to_the_uninterrupted_outputs(tmp_path, monkeypatch, cifar10_root,
                                                                         capsys):
    flags = [*QUICK, "--dataset", "CIFAR10", "--dataroot", cifar10_root, "--first_split_size", "5",
             "--other_split_size", "5", "--schedule", "1", "2", "--batch_size", "25", "--repeat", "1",
             "--exp_name", "disk", "--checkpoint_interval", "0"]
    (tmp_path / "reference").mkdir(), (tmp_path / "full").mkdir()
    monkeypatch.chdir(tmp_path / "reference")
    status, table, _ = run_driver(capsys, *flags)
    assert status == 0

    monkeypatch.chdir(tmp_path / "full")
    save = experiment.checkpoints.atomic_torch_save

    def disk_full_at_the_third(checkpoint, path):
        if path.endswith("checkpoint-000003.pth"):
            _atomic_write(path, torch_writer_out_of_space)
        save(checkpoint, path)

    with monkeypatch.context() as patch:
        patch.setattr(experiment.checkpoints, "atomic_torch_save", disk_full_at_the_third)
        status, _, err = run_driver(capsys, *flags)
    assert status == 2 and err.count("\n") == 1 and "checkpoint-000003.pth: No space left on device" in err
    checkpoints = tmp_path / "full" / "saves" / "disk" / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["checkpoint-000001.pth", "checkpoint-000002.pth"]
    assert not (tmp_path / "full" / "saves" / "disk" / "run.lock").exists()
    status, resumed_table, _ = run_driver(capsys, *flags, "--resume")
    assert status == 0 and resumed_table == table
    assert_same_outputs(outputs(tmp_path / "reference"), outputs(tmp_path / "full"))
