"""A researcher's own images as a dataset: ``--dataset ImageFolder --dataroot DIR``, torchvision's ``ImageFolder``
layout ``DIR/train/<class>/`` and ``DIR/test/<class>/``, read once into uint8 tensors as the other datasets are.

The rules, each in one place here:

- classes: the sub-folders of ``train/``, sorted by name (torchvision's ``find_classes``); a class's label is its
  position. ``test/`` must hold the same class folders, and every class an image in each split.
- images: every file under a class folder (its sub-folders too, as torchvision walks them) whose extension Pillow
  opens (:func:`image_extensions`); other files are ignored. Each is read by torchvision's ``default_loader``
  (Pillow, converted to RGB), resized to ``image_size`` × ``image_size`` (bilinear, antialiased; an image of that size
  already is kept as it is) and stored uint8 (3, size, size). When every image of both splits has R = G = B, one
  channel is kept and the transform repeats it to 3, as for MNIST: a third of the memory, the same network inputs.
- order: the samples of a split sorted by file name (the name alone, without its folders), then by class, so files
  named by their index in a dataset (``00042.png``) keep that dataset's order (:func:`sample_order`).
- normalisation: per channel, the mean and the population standard deviation of the training images' ``x / 255``
  over every pixel, rounded to 4 decimals (:func:`channel_statistics`), as the constants of ``DATASET_INPUTS`` were:
  Fashion-MNIST's padded training images give its 0.2190 and 0.3318.
- cache: the tensors of a folder, once read, go to ``<cache>/image_folders/<key>.pt`` (:func:`cache_directory`),
  ``key`` a hash of ``image_size`` and the folder's listing (every image's path in it, size and modification time),
  so a second run does not decode again and a changed folder is read afresh. A cache that cannot be read or written
  is only a warning.

Anything the user must fix (a split or a class missing, an empty class, an image Pillow cannot read) is a one-line
:class:`UserError`, raised before anything is decoded or written where the listing shows it.
"""
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision.datasets
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.datasets.folder import default_loader
from tqdm import tqdm

from dataloaders.datasets import ImageSet
from dataloaders.transforms import BatchTransform
from utils.errors import UserError
from utils.files import atomic_torch_save

log = logging.getLogger(__name__)

IMAGE_FOLDER = "ImageFolder"
"""``--dataset`` name of an image folder."""

SPLITS = ("train", "test")
CACHE_FORMAT = 1
STATISTICS_DECIMALS = 4
CHUNK = 4096
"""Images summed at a time by :func:`channel_statistics` (bounds its int64 temporaries)."""


def image_extensions() -> Tuple[str, ...]:
    """The file extensions (lower case, with the dot) of every format Pillow can open."""
    Image.init()
    return tuple(sorted(ext for ext, kind in Image.registered_extensions().items() if kind in Image.OPEN))


def layout_hint(root: str) -> str:
    return (f"--dataset ImageFolder reads {os.path.join(root, 'train', '<class>', '')} and "
            f"{os.path.join(root, 'test', '<class>', '')} (README, Your own data)")


@dataclass
class FolderListing:
    """What an image folder holds, before any image is decoded: its classes (sorted) and each split's image files
    with their labels, in :func:`sample_order`."""

    root: str
    classes: List[str]
    files: Dict[str, List[Tuple[str, int]]]

    def fingerprint(self, image_size: int) -> str:
        """The cache key: a hash of ``image_size`` and every image's path (relative to ``root``), size and
        modification time."""
        entries = {"format": CACHE_FORMAT, "image_size": image_size, "classes": self.classes}
        for split, files in self.files.items():
            stats = [os.stat(path) for path, _ in files]
            entries[split] = [(os.path.relpath(path, self.root), stat.st_size, stat.st_mtime_ns)
                              for (path, _), stat in zip(files, stats)]
        return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def sample_order(samples: Sequence[Tuple[str, int]]) -> List[Tuple[str, int]]:
    """``(path, label)`` samples sorted by file name (without its folders), then by label."""
    return sorted(samples, key=lambda sample: (os.path.basename(sample[0]), sample[1]))


def scan_split(root: str, split: str) -> Tuple[List[str], List[Tuple[str, int]]]:
    """The classes and ``(path, label)`` samples of ``root/split`` as torchvision's ``ImageFolder`` finds them (every
    image file Pillow opens); a missing split, no class folder or an empty class is a one-line error."""
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise UserError(f"{folder} is missing: {layout_hint(root)}")
    extensions = image_extensions()
    try:
        found = torchvision.datasets.ImageFolder(folder, is_valid_file=lambda path: path.lower().endswith(extensions),
                                                 allow_empty=True)
    except FileNotFoundError:
        raise UserError(f"{folder} holds no class folder: {layout_hint(root)}") from None
    counts = np.bincount([label for _, label in found.samples], minlength=len(found.classes))
    empty = [name for name, count in zip(found.classes, counts) if count == 0]
    if empty:
        raise UserError(f"class {empty[0]!r} has no image in {os.path.join(folder, empty[0])} (no file of a format "
                        f"Pillow opens): add its images or remove the folder from both splits")
    return found.classes, found.samples


def scan_image_folder(root: str) -> FolderListing:
    """The classes and image files of ``root``, checked: both splits, the same classes in each, none empty."""
    if not os.path.isdir(root):
        raise UserError(f"--dataroot {root}: no such folder; {layout_hint(root)}")
    classes, files = {}, {}
    for split in SPLITS:
        classes[split], samples = scan_split(root, split)
        files[split] = sample_order(samples)
    for split, other in (SPLITS, SPLITS[::-1]):
        alone = sorted(set(classes[split]) - set(classes[other]))
        if alone:
            raise UserError(f"class {alone[0]!r} is in {os.path.join(root, split)} but not in "
                            f"{os.path.join(root, other)}: both splits need the same class folders")
    return FolderListing(root, classes["train"], files)


def decode(path: str, image_size: int) -> torch.Tensor:
    """The image ``path`` as uint8 (3, image_size, image_size); one that Pillow cannot read is a one-line error."""
    try:
        picture = default_loader(path)
    except Exception as error:  # Pillow fails on a broken file with many types (OSError, SyntaxError, ...)
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(f"{path} cannot be read as an image ({reason}): replace or remove it") from None
    if picture.size != (image_size, image_size):
        picture = TF.resize(picture, [image_size, image_size], interpolation=TF.InterpolationMode.BILINEAR,
                            antialias=True)
    return torch.from_numpy(np.asarray(picture, dtype=np.uint8).copy()).permute(2, 0, 1)


def decode_split(files: Sequence[Tuple[str, int]], image_size: int, description: str) -> torch.Tensor:
    """uint8 (N, 3, image_size, image_size) of ``files``, with a progress bar."""
    images = torch.empty((len(files), 3, image_size, image_size), dtype=torch.uint8)
    for index, (path, _) in enumerate(tqdm(files, desc=description, unit="image", disable=None, leave=False)):
        images[index] = decode(path, image_size)
    return images


def channel_statistics(images: torch.Tensor) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per channel, the mean and population standard deviation of ``images / 255`` (uint8 (N, C, H, W)) over every
    pixel, from exact integer sums, each rounded to 4 decimals."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.int64)
    squares = torch.zeros(channels, dtype=torch.int64)
    for start in range(0, len(images), CHUNK):
        values = images[start:start + CHUNK].transpose(0, 1).reshape(channels, -1).long()
        total += values.sum(1)
        squares += (values * values).sum(1)
    count = images.numel() // channels
    mean = total.double() / count
    variance = squares.double() / count - mean * mean
    return (tuple(round(value / 255, STATISTICS_DECIMALS) for value in mean.tolist()),
            tuple(round(value ** 0.5 / 255, STATISTICS_DECIMALS) for value in variance.clamp(min=0).tolist()))


def cache_directory() -> str:
    """Where decoded image folders are kept: ``$CACL_CACHE_DIR``, else ``$XDG_CACHE_HOME/cacl``, else
    ``~/.cache/cacl``."""
    if os.environ.get("CACL_CACHE_DIR"):
        return os.environ["CACL_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cacl")


def read_cache(path: str) -> Optional[dict]:
    """The cached tensors at ``path``, or None (absent, or unreadable: then with a warning)."""
    if not os.path.isfile(path):
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unreadable files
        log.warning("ignoring the unreadable image cache %s (%s): reading the folder again", path,
                    str(error).splitlines()[0])
        return None
    if not isinstance(cached, dict) or cached.get("format") != CACHE_FORMAT:
        log.warning("ignoring the image cache %s of another format: reading the folder again", path)
        return None
    return cached


def write_cache(content: dict, path: str) -> None:
    """Keep ``content`` at ``path``; a write the system refuses only costs the next run a decoding."""
    try:
        atomic_torch_save(content, path)
    except UserError as error:
        log.warning("the image cache is not kept (%s); set CACL_CACHE_DIR to a writable folder", error)


def decoded_folder(listing: FolderListing, image_size: int) -> dict:
    """Both splits' images (uint8; one channel when every image is grey) and labels, from the cache or decoded (and
    then cached)."""
    path = os.path.join(cache_directory(), "image_folders", f"{listing.fingerprint(image_size)}.pt")
    cached = read_cache(path)
    if cached is not None:
        log.info("reading %s from its cache %s", listing.root, path)
        return cached
    log.info("reading %s (%d train and %d test images) into %s", listing.root, len(listing.files["train"]),
             len(listing.files["test"]), path)
    content = {"format": CACHE_FORMAT}
    for split in SPLITS:
        files = listing.files[split]
        content[f"{split}_images"] = decode_split(files, image_size, f"reading {os.path.join(listing.root, split)}")
        content[f"{split}_labels"] = torch.tensor([label for _, label in files], dtype=torch.int64)
    if all(bool((images[:, 1:] == images[:, :1]).all()) for images in (content["train_images"],
                                                                       content["test_images"])):
        for split in SPLITS:
            content[f"{split}_images"] = content[f"{split}_images"][:, :1].clone()
    write_cache(content, path)
    return content


def read_image_folder(listing: FolderListing, image_size: int, train_aug: bool) -> Tuple[ImageSet, ImageSet]:
    """The (train, test) sets of a scanned folder, normalised by the training images' :func:`channel_statistics`;
    ``train_aug`` adds ``RandomCrop(image_size, padding=4)`` + horizontal flip to train, as for CIFAR."""
    content = decoded_folder(listing, image_size)
    mean, std = channel_statistics(content["train_images"])
    grey = content["train_images"].shape[1] == 1
    log.info("%s: %d classes, mean %s, std %s", listing.root, len(listing.classes), mean, std)
    train = ImageSet(content["train_images"], content["train_labels"],
                     BatchTransform(mean, std, augment=train_aug, to_rgb=grey))
    test = ImageSet(content["test_images"], content["test_labels"], BatchTransform(mean, std, to_rgb=grey))
    return train, test


def load_image_folder(root: str, image_size: int, train_aug: bool = False) -> Tuple[ImageSet, ImageSet]:
    """``--dataset ImageFolder``: the (train, test) sets of ``root`` (see the module's rules)."""
    return read_image_folder(scan_image_folder(root), image_size, train_aug)
