"""A researcher's own images: ``--dataset ImageFolder`` reads ``train/<class>/`` and ``test/<class>/`` into the same
tensors as the other datasets (same pixels, order and normalisation: real Fashion-MNIST as PNG files trains exactly as
``--dataset FashionMNIST``), caches them, and a bad folder or spec is one line that writes nothing.
``--dataset sequence`` makes one task of each dataset of a spec, the 5-dataset sequence among them."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dataloaders.image_folder
from dataloaders import (DATASET_INPUTS, FashionMNIST, load_dataset, load_image_folder, multidataset_tasks,
                         read_idx, read_sequence_spec, sequence_tasks)
from dataloaders.datasets import DEBIAN_FASHION_MNIST_FOLDER
from dataloaders.image_folder import cache_directory, channel_statistics, sample_order
from dataloaders.synthetic import write_idx, write_image_folder, write_synthetic_image_folder
from experiment.builders import load_data
from experiment.config import read_config
from helpers import QUICK, assert_same_outputs, needs_fashion_mnist, outputs, run_driver

FASHION_CLASSES = ["0_T-shirt", "1_Trouser", "2_Pullover", "3_Dress"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """The image cache of every test, in its own temporary folder (never the user's)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CACL_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The test's working directory, beside its data and cache."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def folder(tmp_path) -> Path:
    """4 classes of 32×32 RGB images, 3 train and 2 test a class."""
    return Path(write_synthetic_image_folder(str(tmp_path / "folder"), num_classes=4, n_train_per_class=3,
                                             n_test_per_class=2))


def decodes(monkeypatch) -> list:
    """The paths the loader decodes from now on, in order."""
    decoded = []
    loader = dataloaders.image_folder.default_loader

    def counting(path):
        decoded.append(path)
        return loader(path)

    monkeypatch.setattr(dataloaders.image_folder, "default_loader", counting)
    return decoded


# ------------------------------------------------------------------------------------------ the rules
def test_samples_are_ordered_by_file_name_across_classes():
    samples = [("r/train/b/003.png", 1), ("r/train/a/sub/002.png", 0), ("r/train/a/004.png", 0),
               ("r/train/b/001.png", 1), ("r/train/a/003.png", 0)]
    assert sample_order(samples) == [("r/train/b/001.png", 1), ("r/train/a/sub/002.png", 0),
                                     ("r/train/a/003.png", 0), ("r/train/b/003.png", 1), ("r/train/a/004.png", 0)]


def test_statistics_are_the_rounded_mean_and_population_std_of_each_channel():
    images = torch.randint(0, 256, (7, 3, 5, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    values = images.numpy().transpose(1, 0, 2, 3).reshape(3, -1) / 255
    mean, std = channel_statistics(images)
    assert mean == tuple(round(float(m), 4) for m in values.mean(1))
    assert std == tuple(round(float(s), 4) for s in values.std(1))


@needs_fashion_mnist
def test_fashion_mnist_training_images_give_the_published_constants(tmp_path):
    train, _ = FashionMNIST(str(tmp_path))  # the installed Fashion-MNIST, padded to 32×32 as the loader reads it
    expected = DATASET_INPUTS["FashionMNIST"]
    assert channel_statistics(train.images) == (expected.mean, expected.std) == ((0.2190,), (0.3318,))


def test_images_are_resized_grey_ones_kept_in_one_channel_and_normalised_by_the_training_images(tmp_path):
    rgb = write_synthetic_image_folder(str(tmp_path / "rgb"), size=40, seed=1)
    train, test = load_image_folder(rgb, 32, train_aug=True)
    assert train.images.shape == (18, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    assert train.transform.augment and not test.transform.augment and not train.transform.to_rgb
    assert (train.transform.mean, train.transform.std) == channel_statistics(train.images)

    grey = write_synthetic_image_folder(str(tmp_path / "grey"), channels=1, seed=2)
    train, test = load_image_folder(grey, 32)
    assert train.images.shape == (18, 1, 32, 32) and train.transform.to_rgb and test.transform.to_rgb
    path, label = sample_order([(str(p), int(p.parent.name[-1])) for p in Path(grey, "train").rglob("*.png")])[0]
    assert torch.equal(train.images[0, 0], torch.from_numpy(np.array(Image.open(path)))) and train.labels[0] == label
    assert len(train.transform.mean) == 1


def test_a_second_read_comes_from_the_cache_and_a_changed_folder_is_read_again(folder, cache, monkeypatch):
    decoded = decodes(monkeypatch)
    first = load_image_folder(str(folder), 32)
    assert len(decoded) == 20 and len(list((cache / "image_folders").iterdir())) == 1
    assert cache_directory() == str(cache)

    decoded.clear()
    second = load_image_folder(str(folder), 32)
    assert decoded == []
    for a, b in zip(first, second):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)

    changed = folder / "train" / "class_0" / sorted(os.listdir(folder / "train" / "class_0"))[0]
    shutil.copy(folder / "test" / "class_1" / sorted(os.listdir(folder / "test" / "class_1"))[0], changed)
    third = load_image_folder(str(folder), 32)
    assert len(decoded) == 20 and not torch.equal(third[0].images, first[0].images)
    decoded.clear()
    load_image_folder(str(folder), 48)  # another --image_size is another cache entry
    assert len(decoded) == 20 and len(list((cache / "image_folders").iterdir())) == 3


# ------------------------------------------------------------------------------------------ Fashion-MNIST twice
def fashion_subset(per_class: int = 40, test_per_class: int = 20, pool: int = 200):
    """Training and test indices of real Fashion-MNIST, classes 0-3: the first ``test_per_class`` test images of each
    class, and ``per_class`` training images of each class, the first ones with a few swapped for later ones of the
    same class until the padded images' statistics round to the published 0.2190 and 0.3318 (so that an image
    folder of them is normalised exactly as ``--dataset FashionMNIST``). In dataset order."""
    folder = DEBIAN_FASHION_MNIST_FOLDER
    labels = {split: torch.from_numpy(read_idx(f"{folder}/{split}-labels-idx1-ubyte.gz").astype(np.int64))
              for split in ("train", "t10k")}
    images = torch.from_numpy(read_idx(f"{folder}/train-images-idx3-ubyte.gz").astype(np.int64))
    sums, squares = images.sum((1, 2)), (images * images).sum((1, 2))
    chosen = {c: (labels["train"] == c).nonzero().flatten()[:per_class + pool] for c in range(4)}
    selected = {c: indices[:per_class].clone() for c, indices in chosen.items()}
    spare = {c: indices[per_class:].clone() for c, indices in chosen.items()}
    pixels, target = 4 * per_class * 32 * 32, torch.tensor([0.2190, 0.3318], dtype=torch.float64)

    def statistics(total, total_squares):
        mean = total / pixels
        return torch.stack([mean / 255, (total_squares / pixels - mean ** 2).sqrt() / 255], -1)

    for _ in range(100):
        total = sum(sums[i].sum() for i in selected.values()).double()
        total_squares = sum(squares[i].sum() for i in selected.values()).double()
        if ((statistics(total, total_squares) - target).abs() < 3e-5).all():
            break
        best = None
        for c in range(4):
            gain = sums[spare[c]][None, :] - sums[selected[c]][:, None]
            gain_squares = squares[spare[c]][None, :] - squares[selected[c]][:, None]
            distance = ((statistics(total + gain, total_squares + gain_squares) - target) ** 2).sum(-1)
            position = int(distance.argmin())
            if best is None or distance.flatten()[position] < best[0]:
                best = (distance.flatten()[position], c, divmod(position, distance.shape[1]))
        _, c, (i, j) = best
        selected[c][i], spare[c][j] = spare[c][j].clone(), selected[c][i].clone()
    else:
        raise AssertionError("no subset of Fashion-MNIST with the published statistics found")
    train = torch.cat(list(selected.values())).sort().values
    test = torch.cat([(labels["t10k"] == c).nonzero().flatten()[:test_per_class] for c in range(4)]).sort().values
    return train, test


def write_fashion_twice(tmp_path: Path):
    """The same images of Fashion-MNIST as IDX files (``<idx>/FashionMNIST/raw/``, 28×28 as published) and as an
    image folder of PNGs (``<png>/``, padded to 32×32 as the loader pads them), each file named by its position."""
    indices = dict(zip(("train", "t10k"), fashion_subset()))
    idx_root, png_root = tmp_path / "idx", tmp_path / "png"
    raw = idx_root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    splits = {}
    for split, chosen in indices.items():
        images = read_idx(f"{DEBIAN_FASHION_MNIST_FOLDER}/{split}-images-idx3-ubyte.gz")[chosen.numpy()]
        labels = read_idx(f"{DEBIAN_FASHION_MNIST_FOLDER}/{split}-labels-idx1-ubyte.gz")[chosen.numpy()]
        write_idx(str(raw / f"{split}-images-idx3-ubyte"), images)
        write_idx(str(raw / f"{split}-labels-idx1-ubyte"), labels)
        padded = F.pad(torch.from_numpy(images.copy()).unsqueeze(1), (2, 2, 2, 2)).numpy()
        splits["test" if split == "t10k" else "train"] = (padded, labels.astype(np.int64))
    write_image_folder(str(png_root), splits, FASHION_CLASSES)
    return idx_root, png_root


@needs_fashion_mnist
def test_fashion_mnist_as_an_image_folder_trains_exactly_as_fashion_mnist(tmp_path, monkeypatch, capsys):
    idx_root, png_root = write_fashion_twice(tmp_path)
    for read, written in zip(load_dataset("FashionMNIST", str(idx_root)), load_image_folder(str(png_root), 32)):
        assert torch.equal(read.images, written.images) and torch.equal(read.labels, written.labels)
        assert (read.transform.mean, read.transform.std, read.transform.to_rgb) == (
            written.transform.mean, written.transform.std, written.transform.to_rgb)

    common = [*QUICK, "--schedule", "2", "--repeat", "1", "--batch_size", "16", "--first_split_size", "2",
              "--other_split_size", "2", "--no_train_aug", "--exp_name", "same"]
    methods = {"CACL": [], "EWC": ["--agent_type", "regularization", "--agent_name", "EWC", "--model_type",
                                   "customnet", "--model_name", "Net"]}
    datasets = {"FashionMNIST": ["--dataset", "FashionMNIST", "--dataroot", idx_root],
                "ImageFolder": ["--dataset", "ImageFolder", "--dataroot", png_root]}
    for method, flags in methods.items():
        runs = {}
        for dataset, data_flags in datasets.items():
            workdir = tmp_path / method / dataset
            workdir.mkdir(parents=True)
            monkeypatch.chdir(workdir)
            status, table, err = run_driver(capsys, *common, *flags, *data_flags)
            assert status == 0, err
            runs[dataset] = table, outputs(workdir)
        assert runs["FashionMNIST"][0] == runs["ImageFolder"][0], method
        assert_same_outputs(runs["FashionMNIST"][1], runs["ImageFolder"][1])
        found = runs["ImageFolder"][1]
        record = found[next(name for name in found if name.endswith("output_run0.json"))]
        assert record["avg_acc"] > 75, record  # both learnt: the equality is not that of two failures


# ------------------------------------------------------------------------------------------ sequences
def test_the_5_dataset_sequence_is_the_spec_of_its_five_members(tmp_path, multidataset_root):
    spec = tmp_path / "five.json"
    members = ["CIFAR10", "notMNIST", "MNIST", "SVHN", "FashionMNIST"]
    spec.write_text(json.dumps([{"dataset": name, "dataroot": multidataset_root} for name in members]))
    config = read_config(["--dataset", "sequence", "--dataroot", str(spec)])
    expected = multidataset_tasks(multidataset_root)
    for built, reference in zip(load_data(config.data), expected):
        assert list(built) == list(reference) == ["1", "2", "3", "4", "5"]
        if isinstance(reference["1"], int):
            assert built == reference == dict.fromkeys(reference, 10)
            continue
        for name, task in reference.items():
            other = built[name]
            assert torch.equal(other.images, task.images) and torch.equal(other.targets, task.targets)
            assert vars(other.transform) == vars(task.transform)


def test_a_spec_reads_image_folders_and_known_datasets_relative_to_its_folder(tmp_path, mnist_root):
    write_synthetic_image_folder(str(tmp_path / "a"), num_classes=3, size=40)
    write_synthetic_image_folder(str(tmp_path / "b"), num_classes=2, channels=1, seed=3)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps([{"dataset": "ImageFolder", "dataroot": "a"}, {"dataset": "ImageFolder",
                                                                            "dataroot": str(tmp_path / "b")},
                                {"dataset": "MNIST", "dataroot": mnist_root}]))
    train, test, classes = sequence_tasks(read_sequence_spec(str(spec), 32), 32)
    assert classes == {"1": 3, "2": 2, "3": 10}
    assert [tuple(task.images.shape[1:]) for task in train.values()] == [(3, 32, 32), (1, 32, 32), (1, 32, 32)]
    assert not any(task.transform.augment for task in train.values())
    assert train["3"].transform.mean == DATASET_INPUTS["MNIST"].mean
    assert train["1"].transform.mean == channel_statistics(train["1"].images)[0]


def test_an_image_folder_at_84_pixels_trains_the_84_network(folder, workdir, capsys):
    status, _, err = run_driver(capsys, *QUICK, "--dataset", "ImageFolder", "--dataroot", folder, "--image_size",
                                "84", "--first_split_size", "2", "--other_split_size", "2", "--repeat", "1",
                                "--exp_name", "big")
    assert status == 0, err
    state = torch.load(workdir / "saves" / "big_sparse_wt0.01" / "final_model.pth")
    assert state["last.1.0.weight"].shape[1] == 256 * 64  # 8×8 positions of the last feature map: 84×84 inputs


# ------------------------------------------------------------------------------------------ bad input
def remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def first_file(path: Path) -> Path:
    return path / sorted(os.listdir(path))[0]


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:100])
    return path


def not_an_image(path: Path) -> Path:
    path.write_text("not an image")
    return path


def spec_of(tmp_path: Path, folder: Path, *entries) -> list:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(list(entries)))
    return ["--dataset", "sequence", "--dataroot", str(spec)]


BAD = {
    "missing-train": (lambda f, t: remove(f / "train"), [], ["{folder}/train is missing", "train/<class>/"]),
    "missing-test": (lambda f, t: remove(f / "test"), [], ["{folder}/test is missing"]),
    "class-in-one-split": (lambda f, t: remove(f / "test" / "class_2"), [],
                           ["class 'class_2' is in {folder}/train but not in {folder}/test"]),
    "empty-class": (lambda f, t: [remove(p) for p in (f / "test" / "class_1").iterdir()], [],
                    ["class 'class_1' has no image in {folder}/test/class_1"]),
    "truncated-image": (lambda f, t: truncate(first_file(f / "test" / "class_3")), [],
                        ["{folder}/test/class_3/", "cannot be read as an image"]),
    "not-an-image": (lambda f, t: not_an_image(first_file(f / "train" / "class_0")), [],
                     ["{folder}/train/class_0/", "cannot be read as an image"]),
    "classes-do-not-fit": (lambda f, t: None, ["--first_split_size", "3", "--other_split_size", "3"],
                           ["do not divide the 4 classes"]),
    "no-such-folder": (lambda f, t: remove(f), [], ["--dataroot {folder}: no such folder"]),
    "image_size-too-small": (lambda f, t: None, ["--image_size", "16"], ["--image_size 16 is too small"]),
    "spec-missing": (lambda f, t: None, ["--dataset", "sequence", "--dataroot", "{tmp}/none.json"],
                     ["{tmp}/none.json is not a file"]),
    "spec-unknown-dataset": (lambda f, t: None, "spec:ImageNet", ["entry 2 names the unknown dataset 'ImageNet'"]),
    "spec-mixed-sizes": (lambda f, t: None, "spec:miniImageNet",
                         ["mixes image sizes", "entry 2 (miniImageNet) 84×84"]),
    "spec-folder-without-test": (lambda f, t: remove(f / "test"), "spec:folder", ["{folder}/test is missing"]),
    "wandb_entity-without-project": (lambda f, t: None, ["--wandb_entity", "me"], ["give --wandb_project too"]),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_folder_or_spec_is_one_line_and_writes_nothing(case, tmp_path, folder, cache, workdir, capsys):
    damage, argv, expected = BAD[case]
    good = tmp_path / "good"
    shutil.copytree(folder, good)
    damage(folder, tmp_path)
    if isinstance(argv, str):  # a sequence: a good folder first (read before any other is checked), then this
        second = {"ImageNet": {"dataset": "ImageNet"}, "miniImageNet": {"dataset": "miniImageNet"},
                  "folder": {"dataset": "ImageFolder", "dataroot": str(folder)}}[argv.split(":")[1]]
        argv = spec_of(tmp_path, folder, {"dataset": "ImageFolder", "dataroot": str(good)}, second)
    names = {"folder": str(folder), "tmp": str(tmp_path)}
    status, _, err = run_driver(capsys, *QUICK, "--dataset", "ImageFolder", "--dataroot", folder,
                                "--first_split_size", "2", "--other_split_size", "2",
                                *[arg.format(**names) for arg in argv])
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in expected:
        assert fragment.format(**names) in err
    assert list(workdir.iterdir()) == [] and not cache.exists()


def test_wandb_without_the_package_is_one_line_naming_the_install(folder, workdir, capsys, monkeypatch):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    status, _, err = run_driver(capsys, *QUICK, "--dataset", "ImageFolder", "--dataroot", folder,
                                "--first_split_size", "2", "--other_split_size", "2", "--wandb_project", "p")
    assert status == 2 and err.count("\n") == 1 and "pip install wandb" in err
    assert list(workdir.iterdir()) == []
