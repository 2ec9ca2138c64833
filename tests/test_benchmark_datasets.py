"""Specification of the miniImageNet reader and the 5-dataset sequence (CIFAR10, notMNIST, MNIST, SVHN, FashionMNIST)."""

import io
import logging
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

import dataloaders.datasets
from dataloaders import CIFAR10, MNIST, SVHN, FashionMNIST, TaskLoader, load_dataset, miniImageNet, multidataset_tasks, notMNIST
from helpers import error_after_corrupting, one_line
from dataloaders.synthetic import NOTMNIST_LETTERS, write_miniimagenet, write_notmnist_zip, write_svhn_mat
from utils.errors import UserError

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def pickled(entry: dict):
    """A corruption that replaces a file by ``entry`` pickled."""

    def write(path: str) -> None:
        with open(path, "wb") as file:
            pickle.dump(entry, file)

    return write


# ---------------------------------------------------------------- miniImageNet


def test_miniimagenet_reads_the_pickles(miniimagenet_root):
    train, test = miniImageNet(miniimagenet_root)
    with open(os.path.join(miniimagenet_root, "mini-imagenet", "train.pkl"), "rb") as file:
        official = pickle.load(file)
    assert train.images.dtype == torch.uint8 and train.images.shape == (200, 3, 84, 84)
    assert torch.equal(train.images, torch.from_numpy(official["images"]).permute(0, 3, 1, 2))
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == official["labels"]
    assert test.images.shape == (100, 3, 84, 84) and train.num_classes == test.num_classes == 100
    assert load_dataset("miniImageNet", miniimagenet_root)[1].images.shape == test.images.shape


def test_miniimagenet_normalised_with_imagenet_statistics(miniimagenet_root):
    train, test = miniImageNet(miniimagenet_root)
    constant = torch.full((1, 3, 84, 84), 128, dtype=torch.uint8)
    for transform in (train.transform, test.transform):
        inputs = transform(constant)
        expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        assert inputs.shape == (1, 3, 84, 84) and torch.allclose(inputs[0, :, 5, 7], expected)


def test_miniimagenet_train_aug_flips_half_and_never_crops(miniimagenet_root):
    train, test = miniImageNet(miniimagenet_root, train_aug=True)
    assert train.transform.augment and not test.transform.augment
    assert not miniImageNet(miniimagenet_root)[0].transform.augment
    draws = 400
    columns = torch.arange(1, 85, dtype=torch.uint8).expand(draws, 3, 84, 84)
    outputs = train.transform(columns, generator=torch.Generator().manual_seed(0))
    unchanged = test.transform(columns)
    mirrored = test.transform(columns.flip(3))
    same = (outputs == unchanged).flatten(1).all(1)
    flipped = (outputs == mirrored).flatten(1).all(1)
    assert (same | flipped).all(), "every output is the image or its mirror: no crop, no shift"
    assert abs(flipped.float().mean().item() - 0.5) < 0.1


def test_missing_miniimagenet_says_where_to_get_and_put_it(tmp_path):
    with pytest.raises(UserError) as error:
        miniImageNet(str(tmp_path))
    message = one_line(error)
    assert os.path.join(str(tmp_path), "mini-imagenet", "train.pkl") in message
    assert "Adversarial Continual Learning" in message and "--dataroot" in message


@pytest.mark.parametrize(
    "corrupt, problem",
    [
        (lambda path: open(path, "wb").write(b"not a pickle"), "cannot be unpickled"),
        (lambda path: open(path, "wb").write(open(path + "_copy", "rb").read()[:5000]), "cannot be unpickled"),
        (pickled({"data": np.zeros((2, 84, 84, 3), np.uint8), "labels": [0, 1]}), "'images'"),
        (pickled({"images": np.zeros((2, 84, 84, 3), np.float32), "labels": [0, 1]}), "uint8"),
        (pickled({"images": np.zeros((2, 3, 84, 84), np.uint8), "labels": [0, 1]}), "N×84×84×3"),
        (pickled({"images": np.zeros((2, 84, 84, 3), np.uint8), "labels": [0]}), "2 images but 1"),
        (pickled({"images": np.zeros((2, 84, 84, 3), np.uint8), "labels": [0, -1]}), "non-negative integer"),
        (pickled({"images": np.zeros((2, 84, 84, 3), np.uint8), "labels": [[0], [1, 2]]}), "non-negative integer"),
    ],
    ids=["garbage", "truncated", "wrong-key", "wrong-dtype", "wrong-shape", "label-count", "negative-label",
         "ragged-labels"],
)
def test_malformed_miniimagenet_file_is_user_error_naming_it(tmp_path, corrupt, problem):
    path = os.path.join(write_miniimagenet(str(tmp_path), num_classes=5), "test.pkl")
    message = error_after_corrupting(path, corrupt, lambda: miniImageNet(str(tmp_path)))
    assert path in message and problem in message


# ---------------------------------------------------------------- notMNIST and SVHN


def test_notmnist_zip_read_with_letter_labels_padded_to_32(tmp_path):
    path = write_notmnist_zip(str(tmp_path), n_train_per_class=3, n_test_per_class=2)
    train, test = notMNIST(str(tmp_path))
    assert train.images.dtype == torch.uint8 and train.images.shape == (30, 3, 32, 32) and test.images.shape == (20, 3, 32, 32)
    with zipfile.ZipFile(path) as archive:
        pngs = sorted(name for name in archive.namelist() if name.startswith("notMNIST/Test/") and name.endswith(".png"))
        expected = [np.asarray(Image.open(io.BytesIO(archive.read(name)))) for name in pngs]
    assert test.labels.tolist() == [NOTMNIST_LETTERS.index(name.split("/")[2]) for name in pngs]
    assert torch.equal(test.images[:, :, 2:30, 2:30], torch.from_numpy(np.stack(expected))[:, None].expand(-1, 3, -1, -1))
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert test.images[:, :, border].eq(0).all() and train.num_classes == 10
    inputs = test.transform(test.images)
    assert torch.allclose(inputs, (test.images.float() / 255 - 0.4254) / 0.4501) and not train.transform.augment


def test_notmnist_extracted_folder_reads_like_the_archive(tmp_path):
    path = write_notmnist_zip(str(tmp_path / "zipped"), n_train_per_class=2, n_test_per_class=1)
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "extracted")
    from_folder, from_archive = notMNIST(str(tmp_path / "extracted")), notMNIST(str(tmp_path / "zipped"))
    for folder_set, archive_set in zip(from_folder, from_archive):
        assert torch.equal(folder_set.images, archive_set.images) and torch.equal(folder_set.labels, archive_set.labels)


def test_unreadable_notmnist_png_is_skipped_with_one_warning(tmp_path, caplog):
    path = write_notmnist_zip(str(tmp_path), n_train_per_class=2, n_test_per_class=1)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notMNIST/Train/C/broken.png", b"\x89PNG\r\n\x1a\n truncated")
        archive.writestr("notMNIST/Test/J/empty.png", b"")
    with caplog.at_level(logging.WARNING, logger="dataloaders.multidataset"):
        train, test = notMNIST(str(tmp_path))
    assert len(train.labels) == 20 and len(test.labels) == 10
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 unreadable" in warnings[0]


def test_missing_or_empty_notmnist_says_where_to_put_it(tmp_path):
    archive = os.path.join(str(tmp_path), "notMNIST.zip")
    with pytest.raises(UserError) as error:
        notMNIST(str(tmp_path))
    assert archive in one_line(error) and "Adversarial-Continual-Learning" in one_line(error)
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("notMNIST/Train/A/", b"")
    with pytest.raises(UserError) as error:
        notMNIST(str(tmp_path))
    assert "no readable notMNIST/Train/" in one_line(error) and archive in one_line(error)


def test_svhn_label_10_is_digit_0_and_images_are_3x32x32(tmp_path):
    folder = write_svhn_mat(str(tmp_path), n_train=30, n_test=20)
    train, test = SVHN(str(tmp_path))
    official = scipy.io.loadmat(os.path.join(folder, "test_32x32.mat"))
    assert set(official["y"].ravel().tolist()) == set(range(1, 11))
    assert test.labels.dtype == torch.int64 and test.labels.tolist() == (official["y"].ravel() % 10).tolist()
    assert train.images.shape == (30, 3, 32, 32) and test.images.shape == (20, 3, 32, 32)
    assert torch.equal(test.images[7, 2, 5], torch.from_numpy(official["X"][5, :, 2, 7])), "row 5 of channel 2 of image 7"
    assert train.num_classes == 10 and not train.transform.augment


def test_svhn_found_directly_under_dataroot(tmp_path):
    write_svhn_mat(str(tmp_path), n_train=10, n_test=10, folder_name="")
    assert SVHN(str(tmp_path))[1].images.shape == (10, 3, 32, 32)


def test_svhn_never_reads_its_splits_from_two_folders(tmp_path):
    """A train file in ``SVHN/`` and a test file (of another copy) directly under the dataroot: the test split is
    looked for beside the train split, and its absence there is the error, not the other folder's file read."""
    folder = write_svhn_mat(str(tmp_path), n_train=10, n_test=10)
    write_svhn_mat(str(tmp_path), n_train=12, n_test=14, folder_name="", seed=1)
    os.remove(os.path.join(folder, "test_32x32.mat"))
    with pytest.raises(UserError) as error:
        SVHN(str(tmp_path))
    assert os.path.join(folder, "test_32x32.mat") in one_line(error)
    os.remove(os.path.join(folder, "train_32x32.mat"))
    train, test = SVHN(str(tmp_path))
    assert (len(train.labels), len(test.labels)) == (12, 14)


def test_missing_or_malformed_svhn_is_user_error_naming_the_file(tmp_path):
    with pytest.raises(UserError) as error:
        SVHN(str(tmp_path))
    assert os.path.join(str(tmp_path), "SVHN", "train_32x32.mat") in one_line(error)
    folder = write_svhn_mat(str(tmp_path), n_train=10, n_test=10)
    path = os.path.join(folder, "test_32x32.mat")
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [11]], np.uint8)})
    with pytest.raises(UserError) as error:
        SVHN(str(tmp_path))
    assert path in one_line(error) and "outside 1–10" in one_line(error)
    with open(path, "wb") as file:
        file.write(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(UserError) as error:
        SVHN(str(tmp_path))
    assert path in one_line(error)


# ---------------------------------------------------------------- the 5-dataset sequence

MEMBER_NORMALISATION = [
    ("CIFAR10", [125.3 / 255, 123.0 / 255, 113.9 / 255], [63.0 / 255, 62.1 / 255, 66.7 / 255]),
    ("notMNIST", [0.4254] * 3, [0.4501] * 3),
    ("MNIST", [0.1] * 3, [0.2752] * 3),
    ("SVHN", [0.4377, 0.4438, 0.4728], [0.198, 0.201, 0.197]),
    ("FashionMNIST", [0.2190] * 3, [0.3318] * 3),
]


def test_five_dataset_tasks_in_order_with_ten_classes_each(multidataset_root):
    train, test, output_space = multidataset_tasks(multidataset_root)
    assert list(train) == list(test) == ["1", "2", "3", "4", "5"] and output_space == dict.fromkeys(train, 10)
    for name, load in zip(train, (CIFAR10, notMNIST, MNIST, SVHN, FashionMNIST)):
        member_train, member_test = load(multidataset_root)
        assert train[name].name == test[name].name == name
        assert torch.equal(train[name].images, member_train.images) and torch.equal(test[name].targets, member_test.labels)
        assert sorted(set(train[name].targets.tolist())) == list(range(10))


def test_five_dataset_inputs_are_3x32x32_floats_through_the_task_loader(multidataset_root):
    train, _, _ = multidataset_tasks(multidataset_root)
    loader = TaskLoader(list(train.values()), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = []
    for inputs, targets, task_names in loader:
        assert inputs.shape == (len(targets), 3, 32, 32) and inputs.dtype == torch.float32
        assert targets.min() >= 0 and targets.max() <= 9
        seen += task_names
    assert sorted(set(seen)) == ["1", "2", "3", "4", "5"] and len(seen) == sum(len(task) for task in train.values())


def test_five_dataset_members_have_their_own_normalisation_and_no_augmentation(multidataset_root):
    train, test, _ = multidataset_tasks(multidataset_root)
    for (name, task), (member, mean, std) in zip(train.items(), MEMBER_NORMALISATION):
        assert not task.transform.augment and test[name].transform == task.transform, member
        constant = torch.full((1, task.images.shape[1], 32, 32), 100, dtype=torch.uint8)
        inputs = task.transform(constant)
        expected = (100 / 255 - torch.tensor(mean)) / torch.tensor(std)
        assert inputs.shape == (1, 3, 32, 32) and torch.allclose(inputs.mean((0, 2, 3)), expected), member


def test_synthetic_members_are_class_dependent(multidataset_root, miniimagenet_root):
    train, test, _ = multidataset_tasks(multidataset_root)
    pairs = [(train[name].images, train[name].targets, test[name].images, test[name].targets) for name in train]
    mini_train, mini_test = miniImageNet(miniimagenet_root)
    pairs.append((mini_train.images, mini_train.labels, mini_test.images, mini_test.labels))
    for train_images, train_labels, test_images, test_labels in pairs:
        classes = train_labels.unique()
        class_means = torch.stack([train_images[train_labels == c].float().mean(0) for c in classes])
        nearest = classes[torch.cdist(test_images.float().flatten(1), class_means.flatten(1)).argmin(1)]
        assert (nearest == test_labels).float().mean() > 0.9


@pytest.mark.parametrize(
    "member, removed",
    [
        ("CIFAR10", "cifar-10-batches-py"),
        ("notMNIST", "notMNIST.zip"),
        ("MNIST", "MNIST"),
        ("SVHN", "SVHN"),
        ("FashionMNIST", "FashionMNIST"),
    ],
)
def test_missing_member_is_named(multidataset_root, tmp_path, monkeypatch, member, removed):
    monkeypatch.setattr(dataloaders.datasets, "DEBIAN_FASHION_MNIST_FOLDER", str(tmp_path / "absent"))
    root = str(tmp_path / "root")
    shutil.copytree(multidataset_root, root)
    path = os.path.join(root, removed)
    if os.path.isdir(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
    with pytest.raises(UserError) as error:
        multidataset_tasks(root)
    message = one_line(error)
    assert message.startswith(f"{member} ") and removed in message and root in message
