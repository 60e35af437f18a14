"""Datasets larger than memory: image files decoded batch by batch in DataLoader worker processes,
then augmented on the device by zoo's batched augmentations, as the in-memory path is.

Every random choice a worker makes (the training crop) is drawn from the run's seed, the epoch and
the image's index, so a resumed run decodes exactly what the uninterrupted one would have.
"""
from __future__ import annotations

import functools
import io
import math
import os
import random
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .images import balanced_choice, channel_stats, open_image
from ..base.files import regular_file
from ..base.errors import UserError

CROP_SCALE, CROP_RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # RandomResizedCrop's, the ImageNet training crop


@dataclass
class ImageFiles:
    """A dataset as image files and int64 labels: decoded when a batch is drawn. A file is a path, or a
    member of a tar shard as ``(shard, offset, size, member name)``. Training images get
    a random resized crop; test images are resized so that a centre crop of ``crop_pct`` of their
    shorter side becomes ``image_size`` (timm's and torchvision's evaluation)."""

    name: str
    train_files: Sequence[str]
    train_labels: torch.Tensor
    test_files: Sequence[str]
    test_labels: torch.Tensor
    classes: Sequence[str]
    mean: Sequence[float] = ()  # empty: estimated from a seeded sample of the training images
    std: Sequence[float] = ()
    image_size: int = 224
    channels: int = 0  # 0: 1 if the first images are all grey, else 3
    crop_pct: float = 0.875
    workers: int = 0  # 0: one per core, at most 8
    padded_from = None
    streams = True

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            files, labels = getattr(self, f"{split}_files"), getattr(self, f"{split}_labels")
            if len(files) != len(labels) or not len(files):
                raise UserError(f"{self.name}: {len(files)} {split} files but {len(labels)} labels")
        if not self.channels:
            self.channels = 1 if all(_mode(f) in ("1", "L", "I;16") for f in self.train_files[:16]) else 3
        if not self.mean:
            self.mean, self.std = self._sample_stats()

    def _sample_stats(self, count: int = 256) -> tuple[list[float], list[float]]:
        chosen = torch.randperm(len(self.train_files), generator=torch.Generator().manual_seed(0))[:count]
        decoder = Decoder(self.train_files, self.train_labels, self.image_size, self.channels, self.crop_pct, None)
        images = []
        for i in chosen.tolist():
            image, label = decoder[i]
            if label < 0:
                raise UserError(f"{name_of(self.train_files[i])} is not a readable image; remove it or replace it")
            images.append(image)
        return channel_stats(torch.stack(images))

    @property
    def input_size(self) -> int:
        return self.image_size

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device) -> "ImageFiles":
        return self  # files stay where they are; batches go to the device as they are drawn

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> "ImageFiles":
        def pick(files, labels, count):
            index = balanced_choice(labels, count, seed)
            chosen = range(len(files))[index] if isinstance(index, slice) else index.tolist()
            return [files[i] for i in chosen], labels[index]

        (train_files, train_labels), (test_files, test_labels) = (
            pick(self.train_files, self.train_labels, train), pick(self.test_files, self.test_labels, test))
        return replace(self, train_files=train_files, train_labels=train_labels, test_files=test_files,
                       test_labels=test_labels)

    def train_batches(self, batches: list[list[int]], seed: int, epoch: int, device) -> Iterator:
        """The uint8 images and labels of ``batches`` (lists of training indices), on ``device``."""
        return self._load(Decoder(self.train_files, self.train_labels, self.image_size, self.channels,
                                   self.crop_pct, (seed, epoch)), batches, device)

    def test_batches(self, indices: range, batch_size: int, device) -> Iterator:
        batches = [list(indices[i:i + batch_size]) for i in range(0, len(indices), batch_size)]
        return self._load(Decoder(self.test_files, self.test_labels, self.image_size, self.channels,
                                   self.crop_pct, None), batches, device)

    def _load(self, decoder: "Decoder", batches: list[list[int]], device) -> Iterator:
        device = torch.device(device)
        workers = self.workers or min(8, os.cpu_count() or 1)
        loader = torch.utils.data.DataLoader(
            decoder, batch_sampler=batches, num_workers=min(workers, len(batches)), pin_memory=device.type == "cuda",
            prefetch_factor=4 if workers else None, persistent_workers=False)
        for images, labels in loader:
            if labels.min() < 0:  # a worker could not read an image: name it, in one line
                bad = decoder.files[-int(labels.min()) - 1]
                raise UserError(f"{name_of(bad)} is not a readable image; remove it or replace it")
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


class Decoder(torch.utils.data.Dataset):
    """Decodes image ``index`` in a worker: a random resized crop for training (``draw`` seeds it),
    the evaluation's centre crop otherwise; uint8 (C, H, W)."""

    def __init__(self, files: Sequence[str], labels: torch.Tensor, size: int, channels: int, crop_pct: float,
                 draw: tuple[int, int] | None):
        self.files, self.labels, self.size, self.channels = files, labels, size, channels
        self.crop_pct, self.draw = crop_pct, draw

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        mode = "RGB" if self.channels == 3 else "L"
        try:
            data, name = _read(self.files[index])
            with open_image(io.BytesIO(data), name) as img:
                box = (random_resized_crop(img.size, random.Random(hash((*self.draw, index))))
                       if self.draw is not None else centre_crop(img.size, self.crop_pct))
                scale = min(box[2] - box[0], box[3] - box[1]) / self.size
                if scale < 2 and img.format == "JPEG" and img.mode in ("RGB", "L") and _torchvision_io():
                    return _decoded_jpeg(data, box, self.size, self.channels), int(self.labels[index])
                # A JPEG decodes at 1/2, 1/4 or 1/8 scale for a fraction of the work: when the crop stays
                # at least as large as the output there, decode it that way (PIL's draft mode).
                if scale >= 2 and img.format == "JPEG":
                    width, height = img.size
                    img.draft(mode, (math.ceil(width / scale), math.ceil(height / scale)))
                    fx, fy = img.size[0] / width, img.size[1] / height
                    box = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
                if img.mode != mode:
                    img = img.convert(mode)
                img = img.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
                array = np.asarray(img, dtype=np.uint8).reshape(self.size, self.size, self.channels)
        except (UnidentifiedImageError, OSError, UserError, ValueError, RuntimeError, SyntaxError, EOFError):
            return torch.zeros(self.channels, self.size, self.size, dtype=torch.uint8), -1 - index
        return torch.from_numpy(array.copy()).permute(2, 0, 1), int(self.labels[index])


@functools.cache
def _torchvision_io() -> bool:
    """Whether torchvision.io decodes JPEGs here: 1.75x faster than PIL with its resize (bench/streaming.py).
    torchvision 0.29 deprecates it for TorchCodec; without it, PIL decodes every image."""
    import torchvision.io

    return hasattr(torchvision.io, "decode_jpeg")


def _decoded_jpeg(data: bytes, box: tuple[float, float, float, float], size: int, channels: int) -> torch.Tensor:
    """The ``box`` of a JPEG, resized to ``size`` (bilinear, antialiased as PIL's resize is), uint8 (C, H, W)."""
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2.functional import resized_crop

    with warnings.catch_warnings():  # each call warns of the deprecation (see _torchvision_io)
        warnings.simplefilter("ignore", DeprecationWarning)
        image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                            mode=ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY)
    left, top, right, bottom = (round(v) for v in box)
    return resized_crop(image, top, left, max(1, bottom - top), max(1, right - left), [size, size], antialias=True)


MAX_MEMBER_BYTES = 256 << 20  # no image file or shard member is larger: a crafted size is refused, not allocated


def _read(file) -> tuple[bytes, str]:
    """The bytes of an image file, or of a tar shard's member read at its offset (never extracted),
    and its name for messages."""
    if isinstance(file, str):
        path = regular_file(Path(file), "image")  # a FIFO would block forever
        if path.stat().st_size > MAX_MEMBER_BYTES:
            raise UserError(f"{file} is {path.stat().st_size} bytes, not an image zoo reads")
        return path.read_bytes(), file
    shard, offset, size, member = file
    if not 0 < size <= MAX_MEMBER_BYTES:
        raise UserError(f"{shard}: member {member} is {size} bytes, not an image zoo reads")
    with open(shard, "rb") as f:
        f.seek(offset)
        return f.read(size), f"{shard}:{member}"


def _open(file):
    """A PIL image of an image file or a shard's member (see :func:`_read`)."""
    data, name = _read(file)
    return open_image(io.BytesIO(data), name)


def name_of(file) -> str:
    return file if isinstance(file, str) else f"{file[0]}:{file[3]}"


def _mode(file) -> str:
    try:
        with _open(file) as img:
            return img.mode
    except (OSError, UserError, ValueError):
        return "?"  # read again, and named, when its batch is decoded


def random_resized_crop(size: tuple[int, int], rng: random.Random) -> tuple[float, float, float, float]:
    """torchvision's RandomResizedCrop box: area 8-100 % of the image, aspect ratio 3/4-4/3, ten
    tries, then the centre crop of the nearest allowed ratio."""
    width, height = size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    ratio = width / height
    w, h = ((width, round(width / CROP_RATIO[0])) if ratio < CROP_RATIO[0] else
            (round(height * CROP_RATIO[1]), height) if ratio > CROP_RATIO[1] else (width, height))
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def centre_crop(size: tuple[int, int], crop_pct: float) -> tuple[float, float, float, float]:
    """The centre square of side ``crop_pct`` of the shorter side: resize-then-centre-crop in one step."""
    width, height = size
    side = min(width, height) * crop_pct
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side
