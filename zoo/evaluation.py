"""Loss and accuracy of a model on a test set, in the precision and memory format of a trainer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import distributed
from .augmenter import Normalize
from .config import RESERVED_OPTIONS, call_factory
from .distributed import World
from .errors import UserError
from .models import check_file_options
from .data import data_root
from .registry import Registry, default_registry
from .trainer import BaseTrainer, full_precision, prepare_model
from .weights import load_model, require_fields


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


def evaluation_trainer(registry: Registry, recorded: dict[str, Any], name: str | None = None,
                       device: str | None = None) -> BaseTrainer:
    """The trainer that trained some weights (``recorded`` is their metadata's ``trainer``), or the
    trainer ``name``, on ``device``. The same precision and memory formats reproduce the loss and
    accuracy the run reported."""
    recorded_name = recorded.get("name", "fp32")
    options = portable_options(recorded.get("options", {})) if name in (None, recorded_name) else {}
    spec = registry.get("trainer", name or recorded_name)
    check_file_options(spec, spec.load(), options, source="the weights' trainer")
    try:
        return call_factory(spec, device=device, **options)
    except UserError as error:  # fp16 weights from a GPU on a CPU, say
        if name is not None or not options:
            raise
        raise UserError(f"{error} (the weights were trained with {recorded_name} {options}; evaluate them with "
                        "`trainer` fp32)") from error


def evaluate_weights(weights: str | Path, data: str | None = None, data_dir: str | Path | None = None,
                     batch_size: int = 1024, device: str | None = None, trainer: str | None = None,
                     registry: Registry | None = None) -> dict[str, Any]:
    """Loss, accuracy and per-class accuracy of a weights file on the whole test set of ``data`` (by
    default the dataset it was trained on), in the precision and memory format it was trained with
    unless ``trainer`` names another: what ``zoo eval`` prints."""
    registry = registry or default_registry()
    if batch_size < 1:
        raise UserError(f"batch size must be a whole number >= 1, got {batch_size}")
    model = load_model(weights, registry=registry)
    meta = model.zoo_meta
    require_fields(meta, weights, "num_classes", "in_chans", "mean", "std", *(() if data else ("dataset",)))
    runner = evaluation_trainer(registry, meta.get("trainer", {}), trainer, device)
    name = data or meta["dataset"]
    spec = registry.get("data", name)
    # the data as the run had it (its image size, its crop), when it is the data the weights were trained on
    options = meta.get("data_options", {}) if spec.name == meta.get("dataset", spec.name) else {}
    check_file_options(spec, spec.load(), options, source=f"{weights}")
    reserved = sorted(set(options) & set(RESERVED_OPTIONS["data_options"]))
    if reserved:  # where the data is and whether it downloads are the user's to say, never a file's
        raise UserError(f"{weights} sets data option {reserved[0]!r}, which a file may not set; refused")
    dataset = call_factory(spec, root=data_root(data_dir), download=True, **options)
    if meta.get("input_size") is not None and dataset.input_size != meta["input_size"]:
        raise UserError(f"{weights} was trained on {meta['input_size']}x{meta['input_size']} images; {name} has "
                        f"{dataset.input_size}x{dataset.input_size}, and zoo eval does not resize (the accuracy "
                        "would be wrong)")
    if dataset.num_classes != meta.get("num_classes") or dataset.channels != meta.get("in_chans"):
        raise UserError(f"{weights} was trained for {meta.get('num_classes')} classes of {meta.get('in_chans')}-"
                        f"channel images; {name} has {dataset.num_classes} classes of {dataset.channels}-channel "
                        "images")
    model = prepare_model(runner, model, (dataset.channels, dataset.input_size, dataset.input_size))
    result = evaluate(model, runner, Normalize(meta["mean"], meta["std"]), dataset.to(runner.device), batch_size)
    return {"weights": str(weights), "model": meta["model"], "data": name, "test_images": len(dataset.test_labels),
            "precision": runner.precision, "accuracy": result["accuracy"], "loss": result["loss"],
            "per_class_accuracy": dict(zip(dataset.classes, result["per_class_accuracy"]))}
