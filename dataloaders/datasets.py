"""Reads each dataset of the paper from its official files into memory as uint8 tensors.

One function per ``--dataset`` name returns ``(train, test)`` :class:`ImageSet` s. CIFAR is read through torchvision's
readers (official python pickles); MNIST and Fashion-MNIST through a small IDX reader, from torchvision's folder layout
``<dataroot>/<name>/raw/``; miniImageNet from the pickles of the Adversarial Continual Learning code. Data missing from
disk is downloaded with torchvision where a network is reachable (not miniImageNet); anything else the user must fix is
a one-line :class:`UserError`.
"""
import gzip
import logging
import math
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.datasets
from torchvision.datasets.utils import check_integrity

from dataloaders.transforms import BatchTransform
from utils.errors import UserError

T = TypeVar("T")

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST_FOLDER = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` package installs the four gzipped IDX files."""

MNIST_PADDING = 2
"""MNIST digits are 28×28; zero-padding by 2 gives the 32×32 inputs of the 5-dataset sequence."""


@dataclass
class ImageSet:
    """A whole split of a dataset in memory."""

    images: torch.Tensor
    """uint8 (N, C, H, W) on CPU."""
    labels: torch.Tensor
    """int64 (N,)."""
    transform: BatchTransform

    @property
    def num_classes(self) -> int:
        """Number of classes, ``max(label) + 1``."""
        return int(self.labels.max()) + 1


@dataclass(frozen=True)
class NetworkInput:
    """What a network takes from a dataset: float32 images (3, size, size) made ``(x / 255 − mean[c]) / std[c]``
    per channel (one mean/std is broadcast over the channels; grey images are repeated into 3)."""

    size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    channels: int = 3

    @property
    def shape(self) -> Tuple[int, int, int]:
        """(C, H, W) of one image."""
        return self.channels, self.size, self.size


DATASET_INPUTS = {
    "CIFAR10": NetworkInput(32, (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)),
    "CIFAR100": NetworkInput(32, (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
    "MNIST": NetworkInput(32, (0.1000,), (0.2752,)),
    "FashionMNIST": NetworkInput(32, (0.2190,), (0.3318,)),
    "miniImageNet": NetworkInput(84, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
"""The network input of each dataset of :data:`DATASETS` (MNIST-like images are zero-padded from 28 to 32)."""

DATASET_CLASSES = {"CIFAR10": 10, "CIFAR100": 100, "MNIST": 10, "FashionMNIST": 10, "miniImageNet": 100}
"""The classes of each dataset of :data:`DATASETS` (its split sizes are checked before any data is read)."""


# --- CIFAR (official python pickles) ------------------------------------------------------------------------------
class _ChecksumWarningOnly:
    """Mixin for torchvision's CIFAR readers: a present file whose MD5 differs is read anyway, with a warning.

    A missing data or meta file still makes the integrity check fail (so ``download()`` fetches it). Every reader
    checks all files; only the train-split reader computes MD5s, so each file warns once.
    """

    def _check_integrity(self) -> bool:
        files = self.train_list + self.test_list + [[self.meta["filename"], self.meta["md5"]]]
        return all(self._present_with_warning(name, md5) for name, md5 in files)

    def _present_with_warning(self, name: str, md5: str) -> bool:
        path = os.path.join(self.root, self.base_folder, name)
        if not os.path.isfile(path):
            return False
        if self.train and not check_integrity(path, md5):
            log.warning("%s: MD5 differs from the official file; reading it anyway", path)
        return True

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        with open(path, "rb") as file:
            self.classes = pickle.load(file, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}


class _CIFAR10Reader(_ChecksumWarningOnly, torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 reader, tolerant of checksum mismatches."""


class _CIFAR100Reader(_ChecksumWarningOnly, torchvision.datasets.CIFAR100):
    """torchvision's CIFAR-100 reader, tolerant of checksum mismatches."""


def _cifar_where(reader_class: type, dataroot: str) -> str:
    return (f"put {reader_class.base_folder}/ (the official python version) under {os.path.join(dataroot, '')} "
            "or pass --dataroot")


def try_download(reader_class: Callable, name: str, dataroot: str) -> bool:
    """Download and extract the official files into ``dataroot`` with torchvision's ``reader_class``; False (and
    the reason in the log) when that fails."""
    log.info("%s not found under %s: downloading it", name, dataroot)
    try:
        reader_class(dataroot, train=True, download=True)
    except Exception as error:  # a download fails in many ways (network, disk, archive); all mean "no data"
        log.info("download of %s failed: %s", name, error)
        return False
    return True


def _unpickle(path: str) -> object:
    with open(path, "rb") as file:
        return pickle.load(file, encoding="latin1")


def _labels_problem(labels: object, n_images: int, key: str) -> Optional[str]:
    """What makes ``labels`` differ from one non-negative integer label per image, or None if nothing does."""
    try:
        array = np.asarray(labels)
    except ValueError:  # a ragged nest of lists
        array = np.empty(0, dtype=object)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer) or (array.size and array.min() < 0):
        return f"has no list of non-negative integer {key!r}"
    if len(array) != n_images:
        return f"has {n_images} images but {len(array)} labels"
    return None


def _cifar_file_problem(path: str, required_keys: Sequence[str]) -> Optional[str]:
    """What makes ``path`` differ from an official CIFAR pickle, or None if nothing does.

    A data file has ``data`` (uint8, N×3072) and one label per row; a meta file has its names key.
    """
    try:
        entry = _unpickle(path)
    except Exception as error:  # unpickling arbitrary bytes can fail with almost any exception type
        return f"cannot be unpickled ({type(error).__name__})"
    if not isinstance(entry, dict):
        return "is not a pickled dict"
    missing = [key for key in required_keys if key not in entry]
    if missing:
        return f"lacks the key {missing[0]!r}"
    if "data" in required_keys:
        data, label_key = entry["data"], required_keys[1]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
            return "has no uint8 N×3072 'data' array"
        return _labels_problem(entry[label_key], len(data), label_key)
    return None


def _malformed_cifar_error(reader_class: type, name: str, dataroot: str, label_key: str) -> Optional[UserError]:
    """Find the first file that is not in the official format and describe it, or None if all look right."""
    folder = os.path.join(dataroot, reader_class.base_folder)
    required = {file_name: ("data", label_key) for file_name, _ in reader_class.train_list + reader_class.test_list}
    required[reader_class.meta["filename"]] = (reader_class.meta["key"],)
    for file_name, keys in required.items():
        path = os.path.join(folder, file_name)
        problem = _cifar_file_problem(path, keys)
        if problem is not None:
            return UserError(f"{name} file {path} {problem}: replace {reader_class.base_folder}/ under "
                             f"{os.path.join(dataroot, '')} by the official python version")
    return None


def _read_cifar(reader_class: type, name: str, dataroot: str, label_key: str,
                train: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) of one CIFAR split."""
    try:
        reader = reader_class(dataroot, train=train)
        images = torch.from_numpy(reader.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor(reader.targets, dtype=torch.int64)
        if len(labels) != len(images) or (len(labels) and labels.min() < 0):
            raise ValueError("labels do not match the images")
    except Exception as error:  # malformed files fail torchvision's reader in many ways; name the culprit
        user_error = _malformed_cifar_error(reader_class, name, dataroot, label_key)
        if user_error is None:
            raise
        raise user_error from error
    return images, labels


def _load_cifar(reader_class: type, name: str, dataroot: str, label_key: str,
                train_aug: bool) -> Tuple[ImageSet, ImageSet]:
    folder = os.path.join(dataroot, reader_class.base_folder)
    if not os.path.isdir(folder) and not try_download(reader_class, name, dataroot):
        raise UserError(f"{name} not found: {_cifar_where(reader_class, dataroot)}; "
                        "it is downloaded automatically where a network is reachable")
    needed = [file_name for file_name, _ in reader_class.train_list + reader_class.test_list]
    needed.append(reader_class.meta["filename"])
    for file_name in needed:
        if not os.path.isfile(os.path.join(folder, file_name)):
            raise UserError(f"{name} file {os.path.join(folder, file_name)} is missing: "
                            f"{_cifar_where(reader_class, dataroot)}")
    log.info("reading %s from %s", name, folder)
    mean, std = DATASET_INPUTS[name].mean, DATASET_INPUTS[name].std
    train = ImageSet(*_read_cifar(reader_class, name, dataroot, label_key, True),
                     BatchTransform(mean, std, augment=train_aug))
    test = ImageSet(*_read_cifar(reader_class, name, dataroot, label_key, False), BatchTransform(mean, std))
    return train, test


def CIFAR10(dataroot: str, train_aug: bool = False) -> Tuple[ImageSet, ImageSet]:
    """CIFAR-10 from ``<dataroot>/cifar-10-batches-py/``; ``train_aug`` adds ``RandomCrop(32, padding=4)`` + flip to
    train."""
    return _load_cifar(_CIFAR10Reader, "CIFAR10", dataroot, "labels", train_aug)


def CIFAR100(dataroot: str, train_aug: bool = False) -> Tuple[ImageSet, ImageSet]:
    """CIFAR-100 (fine labels) from ``<dataroot>/cifar-100-python/``; ``train_aug`` as for CIFAR10."""
    return _load_cifar(_CIFAR100Reader, "CIFAR100", dataroot, "fine_labels", train_aug)


# --- MNIST and Fashion-MNIST (IDX files) --------------------------------------------------------------------------
def read_idx(path: str) -> np.ndarray:
    """Read an IDX file of unsigned bytes, raw or gzipped (``.gz``).

    Layout (big-endian): magic ``0x0000 08 d`` (type code 0x08 = uint8, d dimensions), then d int32 sizes n_1..n_d,
    then n_1·…·n_d bytes. Images are magic 2051 (d = 3), labels 2049 (d = 1).
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as file:
            content = bytearray(file.read())
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{path} cannot be read ({error}): replace it by the original download") from error
    if len(content) < 4 or content[0:3] != b"\x00\x00\x08":
        raise UserError(f"{path} is not an IDX file of unsigned bytes (bad magic number): replace it by the original "
                        "download")
    num_dims = content[3]
    header_size = 4 + 4 * num_dims
    if len(content) < header_size:
        raise UserError(f"{path} is truncated (incomplete header): replace it by the original download")
    shape = struct.unpack(f">{num_dims}i", content[4:header_size])
    if len(content) - header_size != math.prod(shape):
        raise UserError(f"{path} is truncated or malformed ({len(content) - header_size} data bytes for shape "
                        f"{shape}): replace it by the original download")
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_path(folder: str, stem: str) -> Optional[str]:
    """The file ``stem`` or ``stem.gz`` in ``folder``, whichever exists first, else None."""
    for path in (os.path.join(folder, stem), os.path.join(folder, stem + ".gz")):
        if os.path.isfile(path):
            return path
    return None


def _complete_idx_folder(folders: Sequence[str]) -> Optional[str]:
    """The first folder holding all four IDX files, else None."""
    for folder in folders:
        if all(_idx_path(folder, stem) is not None for stem in _IDX_STEMS):
            return folder
    return None


def _read_idx_split(folder: str, prefix: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 1, 32, 32), zero-padded by 2 from 28×28, and labels int64 (N,) of one split."""
    images_path = _idx_path(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _idx_path(folder, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise UserError(f"{images_path} holds a {images.ndim}-D array, not N×H×W images: replace it by the original "
                        "download")
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"{labels_path} does not hold one label per image of {images_path}: replace both by the "
                        "original download")
    padded = F.pad(torch.from_numpy(images).unsqueeze(1), (MNIST_PADDING,) * 4)
    return padded, torch.from_numpy(labels).long()


def local_idx_folder(name: str, dataroot: str) -> Optional[str]:
    """The folder holding the four IDX files of ``name`` (``MNIST``, ``FashionMNIST``) on this machine, without
    downloading: ``<dataroot>/<name>/raw/``, then, for Fashion-MNIST, Debian's folder; None when none holds them."""
    fallbacks = [DEBIAN_FASHION_MNIST_FOLDER] if name == "FashionMNIST" else []
    return _complete_idx_folder([os.path.join(dataroot, name, "raw"), *fallbacks])


def _load_mnist_like(name: str, reader_class: Callable, dataroot: str,
                     install_hint: str = "") -> Tuple[ImageSet, ImageSet]:
    """Find the IDX files (``local_idx_folder``, then a download) and read both splits, never augmented."""
    primary = os.path.join(dataroot, name, "raw")
    folder = local_idx_folder(name, dataroot)
    if folder is None and try_download(reader_class, name, dataroot):
        folder = _complete_idx_folder([primary])
    if folder is None:
        missing = next(stem for stem in _IDX_STEMS if _idx_path(primary, stem) is None)
        raise UserError(f"{name} not found ({os.path.join(primary, missing)}[.gz] is missing): put {name}/raw/ with "
                        f"the four IDX files under {os.path.join(dataroot, '')} or pass --dataroot{install_hint}; "
                        "it is downloaded automatically where a network is reachable")
    log.info("reading %s from %s", name, folder)
    transform = BatchTransform(DATASET_INPUTS[name].mean, DATASET_INPUTS[name].std, to_rgb=True)
    return ImageSet(*_read_idx_split(folder, "train"), transform), ImageSet(*_read_idx_split(folder, "t10k"), transform)


def MNIST(dataroot: str, train_aug: bool = False) -> Tuple[ImageSet, ImageSet]:
    """MNIST from ``<dataroot>/MNIST/raw/``, padded to 32×32, 3 channels; ``train_aug`` is ignored (never augmented)."""
    return _load_mnist_like("MNIST", torchvision.datasets.MNIST, dataroot)


def FashionMNIST(dataroot: str, train_aug: bool = False) -> Tuple[ImageSet, ImageSet]:
    """Fashion-MNIST from ``<dataroot>/FashionMNIST/raw/`` or Debian's folder, as MNIST; ``train_aug`` is ignored."""
    return _load_mnist_like("FashionMNIST", torchvision.datasets.FashionMNIST, dataroot,
                            install_hint=", or apt-get install dataset-fashion-mnist")


# --- miniImageNet (pickles of Adversarial Continual Learning) -----------------------------------------------------
MINIIMAGENET_SOURCE = ("the train.pkl and test.pkl published with the Adversarial Continual Learning code "
                       "(github.com/facebookresearch/Adversarial-Continual-Learning), which CACL uses")
"""Where the miniImageNet pickles come from; there is no automatic download."""


def _miniimagenet_problem(entry: object) -> Optional[str]:
    """What makes an unpickled ``entry`` differ from a miniImageNet split, or None if nothing does.

    A split is a dict with ``images`` (uint8 N×84×84×3) and ``labels`` (N non-negative ints).
    """
    if not isinstance(entry, dict):
        return "is not a pickled dict"
    missing = [key for key in ("images", "labels") if key not in entry]
    if missing:
        return f"lacks the key {missing[0]!r}"
    images = entry["images"]
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape[1:] == (84, 84, 3)):
        return "has no uint8 N×84×84×3 'images' array"
    return _labels_problem(entry["labels"], len(images), "labels")


def read_checked(path: str, read: Callable[[str], T], problem_of: Callable[[T], Optional[str]], unreadable: str,
                 fix: str) -> T:
    """``read(path)``, checked by ``problem_of`` (what is wrong with the content, or None); a file that fails either
    is a one-line :class:`UserError` naming it, what is wrong (``unreadable`` when ``read`` fails) and the ``fix``."""
    try:
        content = read(path)
    except Exception as error:  # malformed files fail readers (pickle, scipy) with almost any exception type
        problem = f"{unreadable} ({type(error).__name__})"
    else:
        problem = problem_of(content)
    if problem is not None:
        raise UserError(f"{path} {problem}: {fix}")
    return content


def _read_miniimagenet_split(path: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 3, 84, 84) and labels int64 (N,) of one pickled split."""
    entry = read_checked(path, _unpickle, _miniimagenet_problem, "cannot be unpickled",
                         f"replace this miniImageNet file by {MINIIMAGENET_SOURCE}")
    images = torch.from_numpy(entry["images"]).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(np.asarray(entry["labels"]), dtype=torch.int64)


def miniImageNet(dataroot: str, train_aug: bool = False) -> Tuple[ImageSet, ImageSet]:
    """miniImageNet (100 classes, 84×84 RGB) from ``<dataroot>/mini-imagenet/{train,test}.pkl``.

    Normalised with the ImageNet mean and std; ``train_aug`` adds a random horizontal flip (no crop) to train.
    """
    folder = os.path.join(dataroot, "mini-imagenet")
    paths = [os.path.join(folder, file_name) for file_name in ("train.pkl", "test.pkl")]
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"miniImageNet not found ({path} is missing): put {MINIIMAGENET_SOURCE} in "
                            f"{os.path.join(folder, '')} or pass --dataroot")
    log.info("reading miniImageNet from %s", folder)
    mean, std = DATASET_INPUTS["miniImageNet"].mean, DATASET_INPUTS["miniImageNet"].std
    train = ImageSet(*_read_miniimagenet_split(paths[0]),
                     BatchTransform(mean, std, augment=train_aug, crop_padding=0))
    test = ImageSet(*_read_miniimagenet_split(paths[1]), BatchTransform(mean, std))
    return train, test


DATASETS = {"CIFAR10": CIFAR10, "CIFAR100": CIFAR100, "MNIST": MNIST, "FashionMNIST": FashionMNIST,
            "miniImageNet": miniImageNet}


def load_dataset(name: str, dataroot: str, train_aug: bool = False) -> Tuple[ImageSet, ImageSet]:
    """The (train, test) sets of ``--dataset name``."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name](dataroot, train_aug)
