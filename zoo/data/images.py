"""Datasets held whole in memory as uint8 tensors, and the helpers dataset plugins share."""
from __future__ import annotations

import operator
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import torch

from ..base.errors import UserError
from ..base.files import regular_file

DATA_DIR_ENV = "ZOO_DATA_DIR"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Where datasets live: ``--data-dir``, else ``$ZOO_DATA_DIR``, else ``~/.cache/zoo/data``."""
    if data_dir:
        root, source = Path(data_dir).expanduser(), "`data_dir`"
    elif os.environ.get(DATA_DIR_ENV):
        root, source = Path(os.environ[DATA_DIR_ENV]).expanduser(), f"${DATA_DIR_ENV}"
    else:
        root, source = Path.home() / ".cache" / "zoo" / "data", "the default data folder"
    if root.exists() and not root.is_dir():
        raise UserError(f"{source} {root} is not a folder")
    return root


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MAX_IMAGE_PIXELS = 25_000_000  # larger images (a 24-megapixel camera's fit) are refused as bombs, not decoded


def open_image(path: Path | BinaryIO, name: str = ""):
    """A PIL image from a regular file (a FIFO would block forever) or an open binary file (a member of
    a tar shard, ``name`` naming it), refusing decompression bombs."""
    import warnings

    from PIL import Image

    if isinstance(path, (str, os.PathLike)):
        regular_file(Path(path), "image")
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UserError(f"{name or path} is too large an image ({exc})") from None


@dataclass
class ImageData:
    """A whole dataset: images as uint8 tensors of shape (N, C, H, W), labels as int64 (N,)."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: Sequence[str]
    mean: Sequence[float]
    std: Sequence[float]
    # Side of the original images when the reader zero-padded them (Fashion-MNIST: 28 in 32), so
    # that `zoo predict` pads a new image the same way instead of stretching it.
    padded_from: int | None = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise UserError(f"{self.name}: {split} images must be uint8 (N, C, H, W), got {images.dtype} "
                                f"{tuple(images.shape)}")
            if len(images) != len(labels) or len(images) == 0:
                raise UserError(f"{self.name}: {len(images)} {split} images but {len(labels)} labels")
            if labels.min() < 0 or labels.max() >= len(self.classes):
                raise UserError(f"{self.name}: {split} labels outside 0..{len(self.classes) - 1}; the files are corrupt")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise UserError(f"{self.name}: train and test images differ in shape")
        if not (len(self.mean) == len(self.std) == self.channels):
            raise UserError(f"{self.name}: normalisation statistics for {len(self.mean)} channels, images have "
                            f"{self.channels}")

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def input_size(self) -> int:
        return self.train_images.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> "ImageData":
        return replace(self, **{k: getattr(self, k).to(device) for k in
                                ("train_images", "train_labels", "test_images", "test_labels")})

    @classmethod
    def from_datasets(cls, train, test, name: str | None = None) -> "ImageData":
        """Two map-style datasets of ``(image, label)`` (a torchvision dataset, for one) decoded into
        memory: images as PIL images, uint8 or [0, 1] float tensors (C, H, W), or uint8 arrays (H, W, C),
        all of one size; labels as ints. Classes are the dataset's ``classes`` if it has them."""
        from torch.utils.data import Dataset

        for split, dataset in (("train", train), ("test", test)):
            if not isinstance(dataset, Dataset) or not hasattr(dataset, "__len__") or not len(dataset):
                raise UserError(f"the {split} set must be a non-empty map-style dataset of (image, label), "
                                f"got {type(dataset).__name__}")
        name = name or type(train).__name__
        first = _image_tensor(train[0][0], name, 0)
        decoded = (len(train) + len(test)) * first.numel()
        if decoded > memory_budget():
            raise UserError(f"{name} decodes to {decoded / 2**30:.1f} GB, more than zoo holds in memory "
                            f"({memory_budget() / 2**30:.1f} GB); give it as an image folder or WebDataset shards, "
                            "which zoo streams")
        splits = []
        for split, dataset in (("train", train), ("test", test)):
            images = torch.empty((len(dataset), *first.shape), dtype=torch.uint8)
            labels = torch.empty(len(dataset), dtype=torch.long)
            for i in range(len(dataset)):
                image, label = dataset[i]
                images[i] = _image_tensor(image, name, i, first.shape)
                labels[i] = _class_index(label, name, split, i)
            splits.append((images, labels))
        classes = getattr(train, "classes", None)
        if not (isinstance(classes, Sequence) and classes and all(isinstance(c, str) for c in classes)):
            classes = [str(i) for i in range(int(max(labels.max() for _, labels in splits)) + 1)]
        for split, (_, labels) in zip(("train", "test"), splits):
            if labels.max() >= len(classes):
                raise UserError(f"{name}: the {split} set has label {int(labels.max())}, but its classes are "
                                f"{len(classes)} (0..{len(classes) - 1})")
        mean, std = channel_stats(splits[0][0])
        return cls(name, *splits[0], *splits[1], list(classes), mean, std)

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> "ImageData":
        """``train``/``test`` images for quick runs: a seeded, class-balanced choice (the first N of an
        image folder would be one class), in the data's order."""
        train_index, test_index = (balanced_choice(labels, n, seed) for labels, n in
                                   ((self.train_labels, train), (self.test_labels, test)))
        return replace(self, train_images=self.train_images[train_index], train_labels=self.train_labels[train_index],
                       test_images=self.test_images[test_index], test_labels=self.test_labels[test_index])


def _image_tensor(image, name: str, index: int, shape: torch.Size | None = None) -> torch.Tensor:
    """One dataset item's image as uint8 (C, H, W)."""
    import numpy as np

    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim in (2, 3):
        image = torch.from_numpy(image.reshape(*image.shape[:2], -1)).permute(2, 0, 1)
    elif hasattr(image, "getbands"):  # a PIL image
        from torchvision.transforms.functional import pil_to_tensor

        image = pil_to_tensor(image if image.mode in ("L", "RGB") else image.convert("RGB"))
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise UserError(f"{name}: item {index} is not an image (a PIL image, or a (C, H, W) tensor), got "
                        f"{type(image).__name__}")
    if image.is_floating_point():
        if image.min() < 0 or image.max() > 1:
            raise UserError(f"{name}: item {index} has values outside [0, 1]; zoo normalises images itself, "
                            "so leave Normalize out of the dataset's transform")
        image = (image * 255).round().to(torch.uint8)
    elif image.dtype != torch.uint8:
        raise UserError(f"{name}: item {index} is {image.dtype}; images are uint8 or float in [0, 1]")
    if shape is not None and image.shape != shape:
        raise UserError(f"{name}: item {index} is {tuple(image.shape)} but the first is {tuple(shape)}; give the "
                        "dataset a transform that makes its images one size")
    return image


def memory_budget(budget_gb: float = 0.0) -> float:
    """Bytes of decoded images a process may hold in memory: ``budget_gb``, else a quarter of this
    machine's memory shared by the processes of a distributed run on it (each holds its own copy)."""
    return budget_gb * 2**30 or (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4
                                 / int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _class_index(label: Any, name: str, split: str, i: int) -> int:
    """A dataset's label as a class index: an int, a NumPy integer or a one-element integer tensor."""
    try:
        index = operator.index(label)
    except TypeError:
        index = -1
    if index < 0:
        raise UserError(f"{name}: the {split} set's item {i} has label {label!r}; labels are class indices, 0, 1, 2, ...")
    return index


def balanced_choice(labels: torch.Tensor, count: int | None, seed: int) -> torch.Tensor | slice:
    """Indices of ``count`` samples, taken from the classes in turn (each in a seeded random order), so
    every class gets ``count / classes`` of them while it has enough; sorted. All of them when ``count``
    is None or not smaller."""
    if count is None or count >= len(labels):
        return slice(None)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[order]
    # rank of each sample within its class, in the shuffled order: take rank 0 of every class, then 1, ...
    rank = torch.empty_like(order)
    for cls in shuffled.unique():
        members = (shuffled == cls).nonzero().squeeze(1)
        rank[members] = torch.arange(len(members))
    chosen = order[torch.sort(rank, stable=True).indices[:count]]
    return chosen.sort().values


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, scaled to [0, 1]. A constant channel
    gets the deviation of one grey level, not 0, which would normalise it to NaN."""
    # summed a chunk at a time, in float64: a float copy of a whole large dataset would be 4x its size
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for chunk in images.split(256):
        x = chunk.transpose(0, 1).reshape(channels, -1).double()
        total += x.sum(1)
        squares += x.square().sum(1)
    count = images.numel() // channels
    mean = total / count
    variance = (squares - count * mean.square()) / max(1, count - 1)
    return (mean / 255).tolist(), (variance.clamp(min=0).sqrt() / 255).clamp(min=1 / 255).tolist()
