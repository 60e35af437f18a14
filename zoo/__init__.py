"""zoo: a plugin-based model zoo and trainer for the classic CNNs.

Importing ``zoo`` is cheap: torch is imported only when a model is built or trained.
"""
from __future__ import annotations

from typing import Any

from .errors import PluginError, UserError
from .hookspecs import hookimpl
from .specs import (Architecture, Augmentation, Dataset, Exporter, Logger, Optimizer, Scheduler, Trainer, Weights,
                    Wrapper)

__version__ = "0.1.0"

# The public API: everything a user or a plugin may use, importable from ``zoo``. The modules behind
# it are the engine and may change; docs/plugins.md's reference is checked against this list.
_LAZY = {
    # models and weights
    "list_models": "zoo.models",
    "create_model": "zoo.models",
    "load_model": "zoo.weights",
    "save_weights": "zoo.weights",
    "Registry": "zoo.registry",
    "default_registry": "zoo.registry",
    # training, evaluation, prediction
    "RunConfig": "zoo.config",
    "train": "zoo.training",
    "SilentReporter": "zoo.reporting",
    "TrainingInterrupted": "zoo.training",
    "evaluate_weights": "zoo.evaluation",
    "predict": "zoo.prediction",
    "export_weights": "zoo.export",
    "iter_predictions": "zoo.prediction",
    # for plugins: trainers, wrappers, datasets
    "BaseTrainer": "zoo.trainer",
    "prepare_model": "zoo.trainer",
    "Augmenter": "zoo.augmenter",
    "Normalize": "zoo.augmenter",
    "add_attention": "zoo.attention",
    "ImageData": "zoo.data",
    "IMAGE_SUFFIXES": "zoo.data",
    "ImageFiles": "zoo.streaming",
    "channel_stats": "zoo.data",
    "data_root": "zoo.data",
    "download": "zoo.data",
    "file_md5": "zoo.data",
    "memory_budget": "zoo.data",
    "open_image": "zoo.data",
    "regular_file": "zoo.weights",
    "parse_json": "zoo.weights",
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
