"""Specification of the data pipeline: official formats in, batched on-device transforms, GT-RIPL task splits."""

import logging
import os
import pickle
import random

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from scipy import stats

import dataloaders.datasets
from dataloaders import (
    CIFAR10,
    CIFAR100,
    MNIST,
    BatchTransform,
    FashionMNIST,
    ImageSet,
    PermutedGen,
    SplitGen,
    TaskLoader,
    crop_and_flip,
    first_samples,
    load_dataset,
)
from helpers import error_after_corrupting, needs_fashion_mnist, one_line
from dataloaders.synthetic import write_cifar10, write_cifar100, write_idx, write_mnist_idx
from utils.errors import UserError

CIFAR_MEAN, CIFAR_STD = [0.491, 0.482, 0.447], [0.247, 0.243, 0.262]


def labelled_set(labels: list[int], size: int = 4) -> ImageSet:
    """Images whose pixel (0, 0, 0) is the sample's index, so tests can tell samples apart after a transform."""
    images = torch.zeros(len(labels), 1, size, size, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(len(labels), dtype=torch.uint8)
    return ImageSet(images, torch.tensor(labels), BatchTransform([0.0], [1.0]))


# ---------------------------------------------------------------- reading the official formats


def test_cifar10_reads_official_pickles(cifar10_root):
    train, test = CIFAR10(cifar10_root)
    folder = os.path.join(cifar10_root, "cifar-10-batches-py")
    batches = [pickle.load(open(os.path.join(folder, f"data_batch_{i}"), "rb"), encoding="bytes") for i in range(1, 6)]
    expected = np.concatenate([batch[b"data"] for batch in batches]).reshape(-1, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.images.shape == (100, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(expected))
    assert train.labels.tolist() == sum((batch[b"labels"] for batch in batches), [])
    assert test.images.shape == (40, 3, 32, 32) and train.num_classes == test.num_classes == 10


def test_cifar100_reads_official_pickles(cifar100_root):
    train, test = CIFAR100(cifar100_root)
    official = pickle.load(open(os.path.join(cifar100_root, "cifar-100-python", "test"), "rb"), encoding="latin1")
    assert torch.equal(test.images, torch.from_numpy(official["data"].reshape(-1, 3, 32, 32)))
    assert test.labels.dtype == torch.int64 and test.labels.tolist() == official["fine_labels"]
    assert train.images.shape == (500, 3, 32, 32) and train.num_classes == 100


def test_synthetic_cifar_pickles_load_like_the_python2_originals(tmp_path):
    folder = write_cifar100(str(tmp_path), n_per_class_train=1, n_per_class_test=1)
    as_bytes = pickle.load(open(os.path.join(folder, "train"), "rb"), encoding="bytes")
    as_text = pickle.load(open(os.path.join(folder, "meta"), "rb"), encoding="latin1")
    assert {b"data", b"fine_labels", b"coarse_labels", b"filenames", b"batch_label"} == set(as_bytes)
    assert as_bytes[b"data"].dtype == np.uint8 and as_bytes[b"data"].shape == (100, 3072)
    assert set(as_text) == {"fine_label_names", "coarse_label_names"}


def test_synthetic_images_are_class_dependent(cifar10_root):
    train, test = CIFAR10(cifar10_root)
    class_means = torch.stack([train.images[train.labels == c].float().mean(0) for c in range(10)])
    distances = torch.cdist(test.images.float().flatten(1), class_means.flatten(1))
    assert (distances.argmin(1) == test.labels).float().mean() > 0.9


def test_train_aug_augments_only_the_train_set(cifar10_root):
    train, test = CIFAR10(cifar10_root, train_aug=True)
    assert train.transform.augment and train.transform.crop_padding == 4 and not test.transform.augment
    assert not CIFAR10(cifar10_root)[0].transform.augment


def test_checksum_mismatch_is_not_fatal(cifar10_root, caplog):
    with caplog.at_level(logging.WARNING, logger="dataloaders.datasets"):
        CIFAR10(cifar10_root)
    assert any("MD5" in record.getMessage() and "data_batch_1" in record.getMessage() for record in caplog.records)


def test_missing_cifar_is_one_line_user_error(tmp_path):
    with pytest.raises(UserError) as error:
        CIFAR100(str(tmp_path))
    message = one_line(error)
    assert "CIFAR100 not found" in message and "cifar-100-python/" in message and "--dataroot" in message


def test_missing_cifar_file_is_named(tmp_path):
    folder = write_cifar10(str(tmp_path), n_per_class_train=1, n_per_class_test=1)
    os.remove(os.path.join(folder, "test_batch"))
    with pytest.raises(UserError, match="test_batch is missing"):
        CIFAR10(str(tmp_path))


@pytest.mark.parametrize(
    "corrupt, problem",
    [
        (lambda path: open(path, "wb").write(b"not a pickle"), "cannot be unpickled"),
        (lambda path: open(path, "wb").write(open(path + "_copy", "rb").read()[:100]), "cannot be unpickled"),
        (lambda path: pickle.dump({"data": np.zeros((3, 100), np.uint8), "labels": [0, 1, 2]}, open(path, "wb")), "N×3072"),
        (lambda path: pickle.dump({"data": np.zeros((3, 3072), np.uint8), "labels": [0]}, open(path, "wb")), "3 images but 1 labels"),
        (lambda path: pickle.dump({"data": np.zeros((3, 3072), np.uint8), "labels": 3}, open(path, "wb")), "non-negative integer"),
        (lambda path: pickle.dump({"data": np.zeros((3, 3072), np.uint8), "labels": [0, -1, 2]}, open(path, "wb")), "non-negative integer"),
    ],
    ids=["garbage", "truncated", "wrong-shape", "label-count", "labels-not-a-list", "negative-label"],
)
def test_malformed_cifar_file_is_user_error_naming_it(tmp_path, corrupt, problem):
    path = os.path.join(write_cifar10(str(tmp_path), n_per_class_train=2, n_per_class_test=1), "data_batch_3")
    message = error_after_corrupting(path, corrupt, lambda: CIFAR10(str(tmp_path)))
    assert path in message and problem in message


def test_mnist_padded_to_32_and_three_channels(mnist_root):
    train, test = MNIST(mnist_root, train_aug=True)
    raw = dataloaders.datasets.read_idx(os.path.join(mnist_root, "MNIST", "raw", "train-images-idx3-ubyte"))
    assert train.images.shape == (200, 1, 32, 32) and test.images.shape == (50, 1, 32, 32)
    assert torch.equal(train.images[:, 0, 2:30, 2:30], torch.from_numpy(raw))
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert train.images[:, :, border].eq(0).all()
    inputs = train.transform(train.images[:8])
    assert inputs.shape == (8, 3, 32, 32) and inputs.dtype == torch.float32
    assert torch.equal(inputs[:, 0], inputs[:, 2])
    expected = (train.images[:8, 0].float() / 255 - 0.1000) / 0.2752
    assert torch.allclose(inputs[:, 1], expected)
    assert not train.transform.augment, "MNIST is never augmented, as in the published 5-dataset sequence"


def test_mnist_reads_gzipped_idx(tmp_path, mnist_root):
    write_mnist_idx(str(tmp_path), gz=True)
    assert torch.equal(MNIST(str(tmp_path))[1].images, MNIST(mnist_root)[1].images)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_idx_file_is_user_error(tmp_path, suffix):
    folder = write_mnist_idx(str(tmp_path), gz=bool(suffix))
    path = os.path.join(folder, "t10k-images-idx3-ubyte" + suffix)
    content = open(path, "rb").read()
    open(path, "wb").write(content[: len(content) // 2])
    with pytest.raises(UserError) as error:
        MNIST(str(tmp_path))
    assert path in one_line(error)


def test_idx_file_with_wrong_magic_is_user_error(tmp_path):
    folder = write_mnist_idx(str(tmp_path))
    path = os.path.join(folder, "train-labels-idx1-ubyte")
    write_idx(path, np.zeros((200,), np.uint8))
    open(path, "r+b").write(b"\x00\x00\x0d")  # type code 0x0D is float32, not unsigned bytes
    with pytest.raises(UserError, match="bad magic number"):
        MNIST(str(tmp_path))


def test_missing_mnist_is_one_line_user_error(tmp_path):
    with pytest.raises(UserError) as error:
        MNIST(str(tmp_path))
    message = one_line(error)
    assert "MNIST not found" in message and "train-images-idx3-ubyte" in message and "--dataroot" in message


def test_missing_fashion_mnist_suggests_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(dataloaders.datasets, "DEBIAN_FASHION_MNIST_FOLDER", str(tmp_path / "absent"))
    with pytest.raises(UserError) as error:
        FashionMNIST(str(tmp_path))
    assert "apt-get install dataset-fashion-mnist" in one_line(error)


def test_fashion_mnist_prefers_dataroot_over_debian_location(tmp_path):
    write_mnist_idx(str(tmp_path), folder_name="FashionMNIST", n_train=30, n_test=20)
    train, test = FashionMNIST(str(tmp_path))
    assert len(train.labels) == 30 and len(test.labels) == 20


@needs_fashion_mnist
def test_fashion_mnist_found_in_debian_location(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dataloaders.datasets"):
        train, test = FashionMNIST(str(tmp_path))
    assert train.images.shape == (60000, 1, 32, 32) and test.images.shape == (10000, 1, 32, 32)
    assert train.num_classes == test.num_classes == 10
    assert torch.bincount(test.labels).eq(1000).all()
    assert any(dataloaders.datasets.DEBIAN_FASHION_MNIST_FOLDER in record.getMessage() for record in caplog.records)
    grey = train.images.float() / 255
    assert abs(grey.mean() - 0.2190) < 1e-3 and abs(grey.std() - 0.3318) < 1e-3, "the normalisation is of padded images"


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserError) as error:
        load_dataset("SVHN", "data", train_aug=False)
    message = one_line(error)
    assert all(name in message for name in ("CIFAR10", "CIFAR100", "MNIST", "FashionMNIST"))


# ---------------------------------------------------------------- batched transforms


def test_tensor_augmentation_equals_torchvision_for_fixed_offset_and_flip():
    grid = torch.meshgrid(torch.arange(9), torch.arange(9), torch.arange(2), indexing="ij")
    offsets_y, offsets_x, flips = grid[0].flatten(), grid[1].flatten(), grid[2].flatten().bool()
    images = torch.randint(0, 256, (len(flips), 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    transform = BatchTransform(CIFAR_MEAN, CIFAR_STD)
    ours = transform(crop_and_flip(images, offsets_y, offsets_x, flips, padding=4))
    for index in range(len(flips)):
        picture = Image.fromarray(images[index].permute(1, 2, 0).numpy())
        picture = TF.crop(TF.pad(picture, 4), int(offsets_y[index]), int(offsets_x[index]), 32, 32)
        if flips[index]:
            picture = TF.hflip(picture)
        expected = TF.normalize(TF.to_tensor(picture), CIFAR_MEAN, CIFAR_STD)
        assert torch.allclose(ours[index], expected, atol=1e-6, rtol=0)


def test_crop_offsets_uniform_over_9x9_and_flips_half():
    """Images whose pixels hold (row + 1, column + 1) reveal each sample's crop offset and flip at the centre."""
    size, draws = 16, 81 * 200
    rows, columns = torch.meshgrid(torch.arange(1, size + 1), torch.arange(1, size + 1), indexing="ij")
    images = torch.stack([rows, columns]).to(torch.uint8).expand(draws, 2, size, size)
    transform = BatchTransform([0.0, 0.0], [1.0, 1.0], augment=True, crop_padding=4)
    outputs = (transform(images, generator=torch.Generator().manual_seed(1234)) * 255).round().long()
    centre = size // 2
    flipped = outputs[:, 1, centre, centre + 1] < outputs[:, 1, centre, centre]
    offsets_y = outputs[:, 0, centre, centre] - (centre - 4 + 1)  # pixel (c, c) of the crop is padded row oy + c
    offsets_x = outputs[:, 1, centre, centre] - torch.where(flipped, centre - 4, centre - 4 + 1)
    assert offsets_y.min() >= 0 and offsets_y.max() <= 8 and offsets_x.min() >= 0 and offsets_x.max() <= 8
    counts = torch.bincount(offsets_y * 9 + offsets_x, minlength=81).numpy()
    assert stats.chisquare(counts).pvalue > 1e-6
    assert abs(flipped.float().mean().item() - 0.5) < 6 * (0.25 / draws) ** 0.5


def test_transform_keeps_the_device_and_is_reproducible_with_a_generator():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    transform = BatchTransform(CIFAR_MEAN, CIFAR_STD, augment=True)
    first = transform(images, generator=torch.Generator().manual_seed(3))
    second = transform(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second) and first.device == images.device and first.dtype == torch.float32


# ---------------------------------------------------------------- task splits


def test_split_gen_boundaries_and_remap():
    image_set = labelled_set([9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 5])
    train, test, output_space = SplitGen(image_set, image_set, first_split_sz=4, other_split_sz=2)
    assert list(train) == ["1", "2", "3", "4"] and output_space == {"1": 4, "2": 2, "3": 2, "4": 2}
    assert train["1"].targets.tolist() == [0, 1, 2, 3, 0] and train["3"].targets.tolist() == [6, 7]
    assert train["1"].images[:, 0, 0, 0].tolist() == [1, 2, 3, 4, 10], "samples keep their dataset order"
    remapped, _, _ = SplitGen(image_set, image_set, first_split_sz=4, other_split_sz=2, remap_class=True)
    assert remapped["2"].targets.tolist() == [0, 1, 1] and remapped["4"].targets.tolist() == [1, 0]
    assert remapped["4"].name == "4" and len(remapped["4"]) == 2 and test["4"].transform is image_set.transform


def test_max_train_samples_keeps_the_first_samples_of_each_task():
    image_set = labelled_set([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    train, _, _ = SplitGen(image_set, image_set, first_split_sz=2, other_split_sz=2)
    cut = first_samples(train, 3)
    assert cut["1"].images[:, 0, 0, 0].tolist() == [0, 1, 4] and cut["1"].targets.tolist() == [0, 1, 0]
    assert cut["2"].images[:, 0, 0, 0].tolist() == [2, 3, 6] and cut["2"].transform is train["2"].transform
    assert first_samples(train, 0) is train


def test_bad_split_sizes_user_error():
    image_set = labelled_set(list(range(100)), size=2)
    with pytest.raises(UserError) as error:
        SplitGen(image_set, image_set, first_split_sz=5, other_split_sz=3)
    assert "--first_split_size 5 --other_split_size 3" in one_line(error) and "100 classes" in str(error.value)
    with pytest.raises(UserError):
        SplitGen(image_set, image_set, first_split_sz=10, other_split_sz=0)
    with pytest.raises(UserError):
        SplitGen(image_set, image_set, first_split_sz=101, other_split_sz=10)


def test_rand_split_assigns_every_class_once():
    image_set = labelled_set(list(range(20)) * 2, size=2)
    torch.manual_seed(7)
    train, _, _ = SplitGen(image_set, image_set, first_split_sz=5, other_split_sz=5, rand_split=True)
    torch.manual_seed(7)
    class_order = torch.randperm(20).tolist()
    task_classes = [sorted(set(task.targets.tolist())) for task in train.values()]
    assert sorted(sum(task_classes, [])) == list(range(20))
    assert task_classes == [sorted(class_order[i : i + 5]) for i in range(0, 20, 5)]


def test_permuted_gen_draws_one_shuffle_of_all_values_per_task_as_published():
    """Grey 4×4 images seen as 3 channels: each task draws ``random.shuffle(list(range(3·16)))``, task 1's unused."""
    images = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8)
    image_set = ImageSet(images, torch.tensor([0, 1, 2, 0, 1, 2]), BatchTransform([0.5], [0.25], to_rgb=True))
    random.seed(5)
    train, test, output_space = PermutedGen(image_set, image_set, n_permute=3, remap_class=True)
    random.seed(5)
    draws = []
    for _ in range(3):
        order = list(range(48))
        random.shuffle(order)
        draws.append(order)
    assert output_space == {"1": 3, "2": 3, "3": 3}
    assert train["1"].transform.permutation is None
    assert torch.equal(train["1"].transform(images), image_set.transform(images))
    assert [train[name].transform.permutation.tolist() for name in ("2", "3")] == draws[1:]
    unpermuted = image_set.transform(images).flatten(1)
    assert torch.equal(test["2"].transform(images).flatten(1), unpermuted[:, draws[1]])
    assert train["3"].targets.tolist() == [6, 7, 8, 6, 7, 8] and train["3"].images is images
    assert image_set.transform.permutation is None, "the dataset's own transform is left unpermuted"


# ---------------------------------------------------------------- loader


def test_task_loader_covers_every_sample_once_per_epoch():
    image_set = labelled_set([0, 1, 2, 3] * 10)
    train, _, _ = SplitGen(image_set, image_set, first_split_sz=2, other_split_sz=2)
    loader = TaskLoader(list(train.values()), batch_size=7, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 6 and len(TaskLoader(train["1"], 7, shuffle=False, drop_last=True)) == 2
    epochs = []
    for _ in range(2):
        seen = []
        for inputs, targets, task_names in loader:
            assert inputs.dtype == torch.float32 and targets.dtype == torch.int64 and len(task_names) == len(targets)
            indices = (inputs[:, 0, 0, 0] * 255).round().long()
            assert torch.equal(targets, image_set.labels[indices])
            assert task_names == ["1" if label < 2 else "2" for label in targets.tolist()]
            seen += indices.tolist()
        assert sorted(seen) == list(range(40))
        epochs.append(seen)
    assert epochs[0] != epochs[1], "a new order every epoch"


def test_task_loader_applies_each_task_its_own_transform():
    images = torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8)
    image_set = ImageSet(images, torch.arange(8) % 2, BatchTransform([0.0], [1.0]))
    train, _, _ = PermutedGen(image_set, image_set, n_permute=2)
    loader = TaskLoader([train["1"], train["2"]], batch_size=16, shuffle=True)
    inputs, targets, task_names = next(iter(loader))
    for sample, name in zip(inputs, task_names):
        candidates = train[name].transform(images)
        assert (candidates == sample).flatten(1).all(1).any()


def test_train_and_test_splits_of_the_same_size_keep_their_own_labels(tmp_path):
    """The published loader cached labels by dataset type and length, so a test split as long as the train split
    got the train split's labels. Here each split's tasks hold exactly that split's labels (remapped)."""
    write_mnist_idx(str(tmp_path), n_train=60, n_test=60)
    train_set, test_set = load_dataset("MNIST", str(tmp_path), train_aug=False)
    assert len(train_set.labels) == len(test_set.labels) and not torch.equal(train_set.labels, test_set.labels)
    train_splits, test_splits, _ = SplitGen(train_set, test_set, first_split_sz=5, other_split_sz=5, remap_class=True)
    for image_set, splits in ((train_set, train_splits), (test_set, test_splits)):
        for name, classes in (("1", range(0, 5)), ("2", range(5, 10))):
            selected = torch.isin(image_set.labels, torch.tensor(list(classes)))
            assert torch.equal(splits[name].targets, image_set.labels[selected] - classes[0])
            assert torch.equal(splits[name].images, image_set.images[selected])
