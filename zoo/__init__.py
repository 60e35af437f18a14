"""zoo: a plugin-based model zoo and trainer for the classic CNNs.

Importing ``zoo`` is cheap: torch is imported only when a model is built or trained.
"""
from __future__ import annotations

from typing import Any

from .errors import PluginError, UserError
from .hookspecs import hookimpl
from .specs import Architecture, Augmentation, Dataset, Optimizer, Scheduler, Trainer, Wrapper

__version__ = "0.1.0"

_LAZY = {
    "list_models": "zoo.models",
    "create_model": "zoo.models",
    "load_model": "zoo.weights",
    "save_weights": "zoo.weights",
    "Registry": "zoo.registry",
    "default_registry": "zoo.registry",
    "ImageData": "zoo.data",
    "RunConfig": "zoo.training",
    "train": "zoo.training",
}

__all__ = [
    "Architecture", "Augmentation", "Dataset", "Optimizer", "Scheduler", "Trainer", "Wrapper",
    "PluginError", "UserError", "hookimpl", "__version__", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
