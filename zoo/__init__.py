"""zoo: a plugin-based model zoo and trainer for the classic CNNs.

Importing ``zoo`` is cheap: torch is imported only when a model is built or trained.
"""
from __future__ import annotations

from typing import Any

from .base.errors import PluginError, UserError
from .base.version import __version__
from .registry.hooks import hookimpl
from .registry.specs import (Architecture, Augmentation, Dataset, Exporter, Logger, Optimizer, Scheduler, Trainer,
                             Weights, Wrapper)

# The public API: everything a user or a plugin may use, importable from ``zoo``. The modules behind
# it are the engine and may change; docs/plugins.md's reference is checked against this list.
_LAZY = {
    # models and weights
    "list_models": "zoo.models.build",
    "create_model": "zoo.io.create",
    "load_model": "zoo.io.weights",
    "save_weights": "zoo.io.weights",
    "Registry": "zoo.registry.catalog",
    "default_registry": "zoo.registry.catalog",
    # training, evaluation, prediction
    "RunConfig": "zoo.training.config",
    "train": "zoo.training.loop",
    "SilentReporter": "zoo.training.progress",
    "TrainingInterrupted": "zoo.training.loop",
    "evaluate_weights": "zoo.apps.eval",
    "predict": "zoo.apps.predict",
    "export_weights": "zoo.io.export",
    "iter_predictions": "zoo.apps.predict",
    # for plugins: trainers, wrappers, datasets
    "BaseTrainer": "zoo.training.trainer",
    "prepare_model": "zoo.training.trainer",
    "Augmenter": "zoo.data.augmenter",
    "Normalize": "zoo.data.augmenter",
    "add_attention": "zoo.models.attention",
    "ImageData": "zoo.data.images",
    "IMAGE_SUFFIXES": "zoo.data.images",
    "ImageFiles": "zoo.data.streaming",
    "channel_stats": "zoo.data.images",
    "data_root": "zoo.data.images",
    "download": "zoo.base.files",
    "file_md5": "zoo.base.files",
    "memory_budget": "zoo.data.images",
    "open_image": "zoo.data.images",
    "regular_file": "zoo.base.files",
    "parse_json": "zoo.base.files",
}

__all__ = [
    "Architecture", "Augmentation", "Dataset", "Exporter", "Logger", "Optimizer", "Scheduler", "Trainer", "Weights",
    "Wrapper",
    "PluginError", "UserError", "hookimpl", "__version__", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
