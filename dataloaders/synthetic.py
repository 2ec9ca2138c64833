"""Tiny datasets written in exactly the official file formats, for the tests and the benchmarks.

Each image is its class's blocky brightness template plus Gaussian noise, so a small network (or a nearest-class-mean
rule) separates the classes well above chance, even under random crops.

- CIFAR-10 (``cifar-10-batches-py/``): ``data_batch_1`` … ``data_batch_5``, ``test_batch`` are pickled dicts with
  ``data`` (uint8 N×3072: 1024 red, 1024 green, 1024 blue values, rows of 32), ``labels`` (list of int),
  ``batch_label``, ``filenames``; ``batches.meta`` has ``label_names``.
- CIFAR-100 (``cifar-100-python/``): ``train``, ``test`` with ``data``, ``fine_labels``, ``coarse_labels``,
  ``batch_label``, ``filenames``; ``meta`` has ``fine_label_names`` and ``coarse_label_names``.
- MNIST / Fashion-MNIST (``<name>/raw/``): IDX files ``{train,t10k}-images-idx3-ubyte`` (magic 2051, N, 28, 28,
  big-endian) and ``{train,t10k}-labels-idx1-ubyte`` (magic 2049, N), raw or ``.gz``.
- miniImageNet (``mini-imagenet/``): ``train.pkl``, ``test.pkl`` are pickled dicts with ``images`` (uint8 N×84×84×3)
  and ``labels`` (list of int), as published with Adversarial Continual Learning.
- notMNIST (``notMNIST.zip``): 28×28 greyscale PNGs ``notMNIST/{Train,Test}/<A..J>/<name>.png``.
- SVHN (``SVHN/``): ``train_32x32.mat``, ``test_32x32.mat`` (MATLAB v5) with ``X`` (uint8 32×32×3×N) and ``y``
  (N×1, 1 … 10, where 10 is the digit 0).
- an image folder (``--dataset ImageFolder``): PNGs ``{train,test}/<class>/<index>.png``.

The CIFAR pickles are written as Python 2's cPickle wrote the originals (protocol 2, strings as byte strings), so they
load as the originals do: with ``encoding="latin1"`` keys are ``str`` (torchvision), with ``encoding="bytes"`` they
are ``bytes`` (``b"data"``).
"""
import gzip
import io
import os
import pickle
import struct
import zipfile
from typing import List, Mapping, Sequence, Tuple, Union

import numpy as np
import scipy.io
from PIL import Image

CIFAR10_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _Python2Pickler(pickle._Pickler):  # the pure-Python pickler: the only one whose dispatch can be overridden
    """Pickles ``str`` and ``bytes`` as Python 2 byte strings (opcodes SHORT_BINSTRING / BINSTRING)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_string(self, value: Union[str, bytes]) -> None:
        data = value.encode("latin1") if isinstance(value, str) else value
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<I", len(data)) + data)
        self.memoize(value)

    dispatch[str] = save_python2_string
    dispatch[bytes] = save_python2_string


def _pickle_python2(path: str, entry: dict) -> None:
    with open(path, "wb") as file:
        _Python2Pickler(file, protocol=2).dump(entry)


def class_images(labels: np.ndarray, channels: int, size: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, channels, size, size): ``clip(0.8·template[label] + 25 + noise, 0, 255)``, noise ~ N(0, 25²).

    ``template[c]`` is a random (size/block)² grid of brightnesses, each cell ``block`` pixels wide.
    """
    num_classes = int(labels.max()) + 1
    cells = size // block
    templates = rng.integers(0, 256, (num_classes, channels, cells, cells)).repeat(block, axis=2).repeat(block, axis=3)
    noise = rng.normal(0.0, 25.0, (len(labels), channels, size, size))
    return np.clip(0.8 * templates[labels] + 25 + noise, 0, 255).astype(np.uint8)


def _balanced_labels(num_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(num_classes), per_class))


def _cifar_splits(num_classes: int, n_per_class_train: int, n_per_class_test: int, seed: int):
    """(train_images N×3072, train_labels, test_images, test_labels) sharing the class templates."""
    rng = np.random.default_rng(seed)
    train_labels = _balanced_labels(num_classes, n_per_class_train, rng)
    test_labels = _balanced_labels(num_classes, n_per_class_test, rng)
    images = class_images(np.concatenate([train_labels, test_labels]), 3, 32, 8, rng).reshape(-1, 3072)
    return images[:len(train_labels)], train_labels, images[len(train_labels):], test_labels


def _file_names(count: int, start: int) -> List[str]:
    return [f"synthetic_{start + index:06d}.png" for index in range(count)]


def write_cifar10(root: str, n_per_class_train: int = 10, n_per_class_test: int = 4, seed: int = 0) -> str:
    """Write ``<root>/cifar-10-batches-py/`` (five train batches, test batch, meta); return that folder."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    train_images, train_labels, test_images, test_labels = _cifar_splits(10, n_per_class_train, n_per_class_test, seed)
    batches = np.array_split(np.arange(len(train_labels)), 5)
    for number, rows in enumerate(batches, start=1):
        _pickle_python2(os.path.join(folder, f"data_batch_{number}"),
                        {"batch_label": f"training batch {number} of 5", "labels": train_labels[rows].tolist(),
                         "data": train_images[rows],
                         "filenames": _file_names(len(rows), int(rows[0]) if len(rows) else 0)})
    _pickle_python2(os.path.join(folder, "test_batch"),
                    {"batch_label": "testing batch 1 of 1", "labels": test_labels.tolist(), "data": test_images,
                     "filenames": _file_names(len(test_labels), 0)})
    _pickle_python2(os.path.join(folder, "batches.meta"),
                    {"num_cases_per_batch": len(batches[0]), "label_names": CIFAR10_LABEL_NAMES, "num_vis": 3072})
    return folder


def write_cifar100(root: str, n_per_class_train: int = 5, n_per_class_test: int = 2, seed: int = 0) -> str:
    """Write ``<root>/cifar-100-python/`` (train, test, meta; coarse label = fine // 5); return that folder."""
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    train_images, train_labels, test_images, test_labels = _cifar_splits(100, n_per_class_train, n_per_class_test, seed)
    for file_name, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        _pickle_python2(os.path.join(folder, file_name),
                        {"filenames": _file_names(len(labels), 0),
                         "batch_label": f"{'training' if file_name == 'train' else 'testing'} batch 1 of 1",
                         "fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist(), "data": images})
    _pickle_python2(os.path.join(folder, "meta"),
                    {"fine_label_names": [f"fine_{index:02d}" for index in range(100)],
                     "coarse_label_names": [f"coarse_{index:02d}" for index in range(20)]})
    return folder


def write_idx(path: str, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file: magic ``0x0000 08 d``, d big-endian int32 sizes, the bytes; gzip if
    ``.gz``."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    content = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as file:
        file.write(content)


def write_mnist_idx(root: str, folder_name: str = "MNIST", n_train: int = 200, n_test: int = 50, num_classes: int = 10,
                    gz: bool = False, seed: int = 0) -> str:
    """Write the four IDX files of 28×28 digits into ``<root>/<folder_name>/raw/``; return that folder."""
    folder = os.path.join(root, folder_name, "raw")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.arange(n_train) % num_classes)
    test_labels = rng.permutation(np.arange(n_test) % num_classes)
    images = class_images(np.concatenate([train_labels, test_labels]), 1, 28, 7, rng)[:, 0]
    suffix = ".gz" if gz else ""
    for prefix, split_images, labels in (("train", images[:n_train], train_labels),
                                         ("t10k", images[n_train:], test_labels)):
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{suffix}"), split_images)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{suffix}"), labels.astype(np.uint8))
    return folder


def write_miniimagenet(root: str, n_per_class_train: int = 2, n_per_class_test: int = 1, num_classes: int = 100,
                       seed: int = 0) -> str:
    """Write ``<root>/mini-imagenet/{train,test}.pkl`` of 84×84 RGB images; return that folder."""
    folder = os.path.join(root, "mini-imagenet")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_labels = _balanced_labels(num_classes, n_per_class_train, rng)
    test_labels = _balanced_labels(num_classes, n_per_class_test, rng)
    images = class_images(np.concatenate([train_labels, test_labels]), 3, 84, 12, rng).transpose(0, 2, 3, 1)
    for file_name, split_images, labels in (("train.pkl", images[:len(train_labels)], train_labels),
                                            ("test.pkl", images[len(train_labels):], test_labels)):
        with open(os.path.join(folder, file_name), "wb") as file:
            pickle.dump({"images": np.ascontiguousarray(split_images), "labels": labels.tolist()}, file)
    return folder


NOTMNIST_LETTERS = "ABCDEFGHIJ"


def write_notmnist_zip(root: str, n_train_per_class: int = 5, n_test_per_class: int = 2, seed: int = 0) -> str:
    """Write ``<root>/notMNIST.zip`` of 28×28 greyscale PNGs, with the letter folders' entries; return its path."""
    path = os.path.join(root, "notMNIST.zip")
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_labels = _balanced_labels(10, n_train_per_class, rng)
    test_labels = _balanced_labels(10, n_test_per_class, rng)
    images = class_images(np.concatenate([train_labels, test_labels]), 1, 28, 7, rng)[:, 0]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for split, split_images, labels in (("Train", images[:len(train_labels)], train_labels),
                                            ("Test", images[len(train_labels):], test_labels)):
            for letter in NOTMNIST_LETTERS:
                archive.writestr(f"notMNIST/{split}/{letter}/", b"")
            for image, label, file_name in zip(split_images, labels, _file_names(len(labels), 0)):
                png = io.BytesIO()
                Image.fromarray(image).save(png, format="PNG")
                archive.writestr(f"notMNIST/{split}/{NOTMNIST_LETTERS[label]}/{file_name}", png.getvalue())
    return path


def write_svhn_mat(root: str, n_train: int = 50, n_test: int = 20, folder_name: str = "SVHN", seed: int = 0) -> str:
    """Write ``<root>/<folder_name>/{train,test}_32x32.mat`` (``""`` for ``<root>/`` itself); return that folder."""
    folder = os.path.join(root, folder_name)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_digits = rng.permutation(np.arange(n_train) % 10)
    test_digits = rng.permutation(np.arange(n_test) % 10)
    images = class_images(np.concatenate([train_digits, test_digits]), 3, 32, 8, rng)
    for file_name, split_images, digits in (("train_32x32.mat", images[:n_train], train_digits),
                                            ("test_32x32.mat", images[n_train:], test_digits)):
        labels = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(os.path.join(folder, file_name), {"X": split_images.transpose(2, 3, 1, 0), "y": labels})
    return folder


def write_multidataset(root: str) -> str:
    """Write the five members of the 5-dataset sequence, a few images per class each; return ``root``."""
    write_cifar10(root, n_per_class_train=5, n_per_class_test=2, seed=1)
    write_notmnist_zip(root, seed=2)
    write_mnist_idx(root, folder_name="MNIST", n_train=50, n_test=20, seed=3)
    write_svhn_mat(root, seed=4)
    write_mnist_idx(root, folder_name="FashionMNIST", n_train=50, n_test=20, seed=5)
    return root


def write_image_folder(root: str, splits: Mapping[str, Tuple[np.ndarray, np.ndarray]],
                       class_names: Sequence[str]) -> str:
    """Write ``<root>/<split>/<class name>/<index>.png`` for each split's ``(images, labels)``: uint8 images (N, C,
    H, W), C 1 (grey) or 3, each named by its zero-padded index in its split; return ``root``."""
    for split, (images, labels) in splits.items():
        for name in class_names:
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
        for index, (image, label) in enumerate(zip(images, labels)):
            picture = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
            picture.save(os.path.join(root, split, class_names[label], f"{index:05d}.png"))
    return root


def write_synthetic_image_folder(root: str, num_classes: int = 3, n_train_per_class: int = 6,
                                 n_test_per_class: int = 2, size: int = 32, channels: int = 3, seed: int = 0) -> str:
    """Write an image folder of ``num_classes`` classes (``class_0``, ...) of ``size``×``size`` images with
    ``channels`` channels; return ``root``."""
    rng = np.random.default_rng(seed)
    labels = {"train": _balanced_labels(num_classes, n_train_per_class, rng),
              "test": _balanced_labels(num_classes, n_test_per_class, rng)}
    images = class_images(np.concatenate([labels["train"], labels["test"]]), channels, size, size // 4, rng)
    splits = {"train": (images[:len(labels["train"])], labels["train"]),
              "test": (images[len(labels["train"]):], labels["test"])}
    return write_image_folder(root, splits, [f"class_{index}" for index in range(num_classes)])
