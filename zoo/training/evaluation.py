"""Loss and accuracy of a model on a test set, in the precision and memory format of a trainer."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..data.augmenter import Normalize
from . import distributed
from .distributed import World
from .trainer import BaseTrainer, full_precision


def evaluate(model: torch.nn.Module, trainer: BaseTrainer, normalize: Normalize, data, batch_size: int,
             world: World = World()) -> dict[str, Any]:
    """Loss, accuracy and per-class accuracy over the test set of ``data`` (in memory on the trainer's
    device, or streamed from files), in inference mode. In a distributed run each rank evaluates its
    own share and the sums are added up, so every image counts once."""
    count = len(data.test_labels)
    share = range(world.rank * count // world.size, (world.rank + 1) * count // world.size)
    device = trainer.device
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(1, device=device)
    correct = torch.zeros(data.num_classes, device=device)
    counts = torch.zeros(data.num_classes, device=device)
    with torch.inference_mode(), trainer.autocast():
        for images, y in test_batches(data, share, batch_size, device):
            logits = full_precision(model(trainer.prepare_input(normalize(images))))
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct.index_add_(0, y, (logits.argmax(1) == y).float())
            counts += torch.bincount(y, minlength=data.num_classes)
    model.train(was_training)
    distributed.all_sum(loss_sum, correct, counts)
    total = counts.sum().item()
    return {"loss": loss_sum.item() / total, "accuracy": correct.sum().item() / total,
            "per_class_accuracy": (correct / counts.clamp(min=1)).tolist()}


def test_batches(data, share: range, batch_size: int, device):
    """Batches of uint8 test images and labels on ``device``: slices of the tensors of in-memory data,
    decoded by workers for streamed data."""
    if getattr(data, "streams", False):
        yield from data.test_batches(share, batch_size, device)
        return
    images, labels = data.test_images[share.start:share.stop], data.test_labels[share.start:share.stop]
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


def portable_options(trainer_options: dict[str, Any]) -> dict[str, Any]:
    """The trainer options that also hold on another machine: not the device, not compilation."""
    return {k: v for k, v in trainer_options.items() if k not in ("device", "compile")}
