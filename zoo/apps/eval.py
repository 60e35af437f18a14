"""``zoo eval``: a weights file on a test set, as the run that made it measured it."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ..base.errors import UserError
from ..data.augmenter import Normalize
from ..data.images import data_root
from ..io.weights import load_model, require_fields
from ..registry.catalog import Registry, default_registry
from ..registry.factories import call_factory, check_file_options
from ..training.config import RESERVED_OPTIONS
from ..training.evaluation import evaluate, portable_options
from ..training.trainer import BaseTrainer, prepare_model


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
    runner = evaluation_trainer(registry, meta.trainer, trainer, device)
    name = data or meta.dataset
    spec = registry.get("data", name)
    # the data as the run had it (its image size, its crop), when it is the data the weights were trained on
    options = meta.data_options if spec.name == (meta.dataset or spec.name) else {}
    check_file_options(spec, spec.load(), options, source=f"{weights}")
    reserved = sorted(set(options) & set(RESERVED_OPTIONS["data_options"]))
    if reserved:  # where the data is and whether it downloads are the user's to say, never a file's
        raise UserError(f"{weights} sets data option {reserved[0]!r}, which a file may not set; refused")
    try:
        dataset = call_factory(spec, root=data_root(data_dir), download=True, **options)
    except UserError as exc:  # the folder the run used, as the file says it: a hint, never a path zoo reads
        if data_dir is not None or not meta.data_dir or spec.name != meta.dataset:
            raise
        raise UserError(f"{exc}; {weights} was trained on the data in {meta.data_dir} (as the file says): give "
                        f"--data-dir {shlex.quote(meta.data_dir)} to evaluate on it") from exc
    if meta.input_size is not None and dataset.input_size != meta.input_size:
        raise UserError(f"{weights} was trained on {meta.input_size}x{meta.input_size} images; {name} has "
                        f"{dataset.input_size}x{dataset.input_size}, and zoo eval does not resize (the accuracy "
                        "would be wrong)")
    if dataset.num_classes != meta.num_classes or dataset.channels != meta.in_chans:
        raise UserError(f"{weights} was trained for {meta.num_classes} classes of {meta.in_chans}-"
                        f"channel images; {name} has {dataset.num_classes} classes of {dataset.channels}-channel "
                        "images")
    model = prepare_model(runner, model, (dataset.channels, dataset.input_size, dataset.input_size))
    result = evaluate(model, runner, Normalize(meta.mean, meta.std), dataset.to(runner.device), batch_size)
    return {"weights": str(weights), "model": meta.model, "data": name, "test_images": len(dataset.test_labels),
            "precision": runner.precision, "accuracy": result["accuracy"], "loss": result["loss"],
            "per_class_accuracy": dict(zip(dataset.classes, result["per_class_accuracy"]))}
