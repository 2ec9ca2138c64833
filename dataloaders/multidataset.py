"""The 5-dataset sequence of Adversarial Continual Learning and CACL: five 10-class tasks, one dataset each.

Task "1" is CIFAR10, "2" notMNIST (letters A–J), "3" MNIST, "4" SVHN and "5" FashionMNIST, in that order; each keeps
its own labels 0–9 (one head per task). Every input is 3×32×32: the 28×28 members are zero-padded by 2 when read and
the grey ones repeated to 3 channels by their transform. Each member is normalised with its own mean and std
(:data:`NORMALISATION`) and none is augmented.

notMNIST is read from the ``notMNIST.zip`` published with the Adversarial Continual Learning code (members
``notMNIST/{Train,Test}/<letter>/*.png``) or from that archive extracted; SVHN from the official
``{train,test}_32x32.mat`` (MATLAB v5: ``X`` uint8 32×32×3×N, ``y`` N×1 with 10 meaning digit 0). The other members
come from the readers of :mod:`dataloaders.datasets`. The sequence itself is the spec of these five members
(``dataloaders.sequence.multidataset_tasks``).
"""
import io
import logging
import os
import zipfile
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
import torchvision.datasets
from PIL import Image
from torchvision.datasets.utils import download_url

from dataloaders.datasets import (CIFAR10, DATASET_INPUTS, MNIST, MNIST_PADDING, FashionMNIST, ImageSet,
                                  read_checked)
from dataloaders.transforms import BatchTransform
from utils.errors import UserError

log = logging.getLogger(__name__)

NORMALISATION = {
    "CIFAR10": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
    "notMNIST": ((0.4254,), (0.4501,)),
    "MNIST": (DATASET_INPUTS["MNIST"].mean, DATASET_INPUTS["MNIST"].std),
    "SVHN": ((0.4377, 0.4438, 0.4728), (0.198, 0.201, 0.197)),
    "FashionMNIST": (DATASET_INPUTS["FashionMNIST"].mean, DATASET_INPUTS["FashionMNIST"].std),
}
"""(mean, std) of each member, per channel or one value broadcast over the channels, as in the published code."""

NUM_CLASSES = 10
"""Classes of every member, hence outputs of every task's head."""

MEMBER_SIZE = 32
"""The side of every member's images (the 28×28 ones zero-padded)."""


# --- notMNIST (PNGs in the published zip) -------------------------------------------------------------------------
NOTMNIST_LABELS = {letter: index for index, letter in enumerate("ABCDEFGHIJ")}
"""The label of each letter folder: A = 0 … J = 9."""

NOTMNIST_SOURCE = ("the notMNIST.zip published with the Adversarial Continual Learning code "
                   "(github.com/facebookresearch/Adversarial-Continual-Learning)")


def _notmnist_where(dataroot: str) -> str:
    return f"put {NOTMNIST_SOURCE} at {os.path.join(dataroot, 'notMNIST.zip')} (or extracted there) or pass --dataroot"


def _notmnist_labelled_names(names: Iterable[str], split: str) -> List[Tuple[str, int]]:
    """The members ``notMNIST/<split>/<letter>/<file>.png`` among ``names``, sorted, with their letter's label."""
    labelled = []
    for name in sorted(names):
        parts = name.split("/")
        if len(parts) == 4 and parts[:2] == ["notMNIST", split] and parts[2] in NOTMNIST_LABELS:
            if parts[3].lower().endswith(".png"):
                labelled.append((name, NOTMNIST_LABELS[parts[2]]))
    return labelled


def _decode_notmnist_image(read: Callable[[str], bytes], name: str) -> Optional[np.ndarray]:
    """The member ``name`` as uint8 (28, 28, 3) RGB, or None where it cannot be read or is not 28×28."""
    try:
        with Image.open(io.BytesIO(read(name))) as picture:
            image = np.asarray(picture.convert("RGB"))
    except Exception:  # a broken member fails zipfile or PIL in many ways (BadZipFile, OSError, SyntaxError, …)
        return None
    return image if image.shape == (28, 28, 3) else None


def _read_notmnist(dataroot: str, source: str, names: List[str],
                   read: Callable[[str], bytes]) -> Tuple[ImageSet, ImageSet]:
    """Both splits from the archive or folder ``source`` (members ``names``, fetched by ``read``).

    Images are uint8 (N, 3, 32, 32), zero-padded by 2; unreadable images are skipped with one warning.
    """
    mean, std = NORMALISATION["notMNIST"]
    transform = BatchTransform(mean, std)
    image_sets, skipped = [], 0
    for split in ("Train", "Test"):
        images, labels = [], []
        for name, label in _notmnist_labelled_names(names, split):
            image = _decode_notmnist_image(read, name)
            if image is None:
                skipped += 1
            else:
                images.append(image)
                labels.append(label)
        if not images:
            raise UserError(f"{source} holds no readable notMNIST/{split}/<A..J>/*.png image: "
                            f"{_notmnist_where(dataroot)}")
        padded = F.pad(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), (MNIST_PADDING,) * 4)
        image_sets.append(ImageSet(padded, torch.tensor(labels, dtype=torch.int64), transform))
    if skipped:
        log.warning("%s: skipped %d unreadable notMNIST images", source, skipped)
    return image_sets[0], image_sets[1]


def notMNIST(dataroot: str) -> Tuple[ImageSet, ImageSet]:
    """notMNIST (letters A–J) from ``<dataroot>/notMNIST.zip``, else from the extracted ``<dataroot>/notMNIST/``.

    Each PNG is read as RGB and zero-padded from 28×28 to 32×32; never augmented.
    """
    archive = os.path.join(dataroot, "notMNIST.zip")
    folder = os.path.join(dataroot, "notMNIST")
    if os.path.isfile(archive):
        try:
            opened = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as error:
            raise UserError(f"notMNIST archive {archive} cannot be read as a zip file ({error}): "
                            f"{_notmnist_where(dataroot)}") from error
        log.info("reading notMNIST from %s", archive)
        with opened:
            return _read_notmnist(dataroot, archive, opened.namelist(), opened.read)
    if os.path.isdir(folder):

        def read(name: str) -> bytes:
            with open(os.path.join(dataroot, name), "rb") as file:
                return file.read()

        names = [os.path.relpath(os.path.join(directory, file_name), dataroot).replace(os.sep, "/")
                 for directory, _, file_names in os.walk(folder) for file_name in file_names]
        log.info("reading notMNIST from %s", folder)
        return _read_notmnist(dataroot, folder, names, read)
    raise UserError(f"notMNIST not found ({archive} is missing): {_notmnist_where(dataroot)}")


# --- SVHN (official MATLAB files) ---------------------------------------------------------------------------------
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _svhn_where(dataroot: str) -> str:
    return (f"put the official {SVHN_FILES['train']} and {SVHN_FILES['test']} (cropped digits) in "
            f"{os.path.join(dataroot, 'SVHN', '')} or pass --dataroot")


def _svhn_folder(dataroot: str) -> str:
    """Where both splits are read from: the first of ``<dataroot>/SVHN/`` and ``<dataroot>/`` that holds either
    file, else ``<dataroot>/SVHN/`` (into which they are downloaded); never a split from each."""
    candidates = (os.path.join(dataroot, "SVHN"), dataroot)
    for folder in candidates:
        if any(os.path.isfile(os.path.join(folder, name)) for name in SVHN_FILES.values()):
            return folder
    return candidates[0]


def _svhn_path(folder: str, split: str, dataroot: str) -> str:
    """The split's file in ``folder``, downloaded there where it is missing."""
    path = os.path.join(folder, SVHN_FILES[split])
    if os.path.isfile(path):
        return path
    log.info("%s not found: downloading it", path)
    url, _, md5 = torchvision.datasets.SVHN.split_list[split]
    try:
        download_url(url, folder, SVHN_FILES[split], md5)
    except Exception as error:  # a download fails in many ways (network, disk, checksum); all mean "no data"
        log.info("download of %s failed: %s", url, error)
        if os.path.isfile(path):
            os.remove(path)
        raise UserError(f"SVHN not found ({path} is missing): {_svhn_where(dataroot)}; "
                        "they are downloaded automatically where a network is reachable") from error
    return path


def _svhn_problem(content: dict) -> Optional[str]:
    """What makes a loaded .mat file differ from an official SVHN split, or None if nothing does."""
    missing = [key for key in ("X", "y") if key not in content]
    if missing:
        return f"lacks the variable {missing[0]!r}"
    images, labels = content["X"], np.asarray(content["y"])
    is_official = isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
    if not (is_official and images.shape[:3] == (32, 32, 3)):
        return "has no uint8 32×32×3×N 'X' array"
    if labels.size != images.shape[3]:
        return f"has {images.shape[3]} images but {labels.size} labels"
    if not (np.issubdtype(labels.dtype, np.number) and np.isin(labels, np.arange(1, 11)).all()):
        return "has labels outside 1–10"
    return None


def _read_svhn_split(path: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) in 0–9 of one official file, where label 10 is digit 0."""
    content = read_checked(path, scipy.io.loadmat, _svhn_problem, "cannot be read as a MATLAB file",
                           f"replace this SVHN file by the official {os.path.basename(path)}")
    images = torch.from_numpy(content["X"]).permute(3, 2, 0, 1).contiguous()
    labels = torch.from_numpy(np.asarray(content["y"]).reshape(-1).astype(np.int64))
    labels[labels == 10] = 0
    return images, labels


def SVHN(dataroot: str) -> Tuple[ImageSet, ImageSet]:
    """SVHN (cropped digits) from ``<dataroot>/SVHN/`` or ``<dataroot>/`` (both splits from the same folder,
    ``_svhn_folder``); never augmented."""
    mean, std = NORMALISATION["SVHN"]
    transform = BatchTransform(mean, std)
    folder = _svhn_folder(dataroot)
    train_path, test_path = _svhn_path(folder, "train", dataroot), _svhn_path(folder, "test", dataroot)
    log.info("reading SVHN from %s and %s", train_path, test_path)
    return ImageSet(*_read_svhn_split(train_path), transform), ImageSet(*_read_svhn_split(test_path), transform)


# --- the sequence -------------------------------------------------------------------------------------------------
MEMBERS: Dict[str, Callable[[str], Tuple[ImageSet, ImageSet]]] = {
    "CIFAR10": CIFAR10,
    "notMNIST": notMNIST,
    "MNIST": MNIST,
    "SVHN": SVHN,
    "FashionMNIST": FashionMNIST,
}
"""The (train, test) reader of each member, in task order."""

