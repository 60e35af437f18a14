"""Loss and accuracy of a model on a test set, in the precision and memory format of a trainer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import distributed
from .augmenter import Normalize
from .config import call_factory
from .distributed import World
from .errors import UserError
from .models import check_file_options
from .data import data_root
from .registry import Registry, default_registry
from .trainer import BaseTrainer, full_precision, prepare_model
from .weights import load_model, require_fields


def evaluate(model: torch.nn.Module, trainer: BaseTrainer, normalize: Normalize, images: torch.Tensor,
             labels: torch.Tensor, batch_size: int, num_classes: int, world: World = World()) -> dict[str, Any]:
    """Loss, accuracy and per-class accuracy over all ``images``, in inference mode. In a distributed
    run each rank evaluates its own share and the sums are added up, so every image counts once."""
    share = slice(world.rank * len(images) // world.size, (world.rank + 1) * len(images) // world.size)
    images, labels = images[share], labels[share]
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(1, device=images.device)
    correct = torch.zeros(num_classes, device=images.device)
    with torch.inference_mode(), trainer.autocast():
        for start in range(0, len(images), batch_size):
            x = trainer.prepare_input(normalize(images[start:start + batch_size]))
            y = labels[start:start + batch_size]
            logits = full_precision(model(x))
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct.index_add_(0, y, (logits.argmax(1) == y).float())
    model.train(was_training)
    counts = torch.bincount(labels, minlength=num_classes).float()
    distributed.all_sum(loss_sum, correct, counts)
    total = counts.sum().item()
    return {"loss": loss_sum.item() / total, "accuracy": correct.sum().item() / total,
            "per_class_accuracy": (correct / counts.clamp(min=1)).tolist()}


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
                        "--trainer fp32)") from error


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
    dataset = registry.get("data", name).load()(root=data_root(data_dir), download=True)
    if meta.get("input_size") is not None and dataset.input_size != meta["input_size"]:
        raise UserError(f"{weights} was trained on {meta['input_size']}x{meta['input_size']} images; {name} has "
                        f"{dataset.input_size}x{dataset.input_size}, and zoo eval does not resize (the accuracy "
                        "would be wrong)")
    if dataset.num_classes != meta.get("num_classes") or dataset.channels != meta.get("in_chans"):
        raise UserError(f"{weights} was trained for {meta.get('num_classes')} classes of {meta.get('in_chans')}-"
                        f"channel images; {name} has {dataset.num_classes} classes of {dataset.channels}-channel "
                        "images")
    model = prepare_model(runner, model, tuple(dataset.test_images.shape[1:]))
    on_device = dataset.to(runner.device)
    result = evaluate(model, runner, Normalize(meta["mean"], meta["std"]), on_device.test_images,
                      on_device.test_labels, batch_size, dataset.num_classes)
    return {"weights": str(weights), "model": meta["model"], "data": name, "test_images": len(dataset.test_images),
            "precision": runner.precision, "accuracy": result["accuracy"], "loss": result["loss"],
            "per_class_accuracy": dict(zip(dataset.classes, result["per_class_accuracy"]))}
