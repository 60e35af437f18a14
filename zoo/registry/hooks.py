"""The hooks a plugin may implement: one per kind of spec (``zoo.registry.specs.KINDS``), each returning
an iterable of specs of that kind.

A plugin is any module registered under the ``zoo.plugins`` entry-point group that defines some of
these functions, decorated with :data:`zoo.hookimpl`.
"""
from __future__ import annotations

from typing import Iterable

import pluggy

from .specs import (KINDS, Architecture, Augmentation, Dataset, Exporter, Logger, Optimizer, Scheduler, Trainer,
                    Weights, Wrapper)

PROJECT = "zoo"
ENTRY_POINT_GROUP = "zoo.plugins"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def architectures() -> Iterable[Architecture]:
    """Networks this plugin provides."""


@hookspec
def wrappers() -> Iterable[Wrapper]:
    """Wrappers (e.g. attention blocks) that compose with architectures as ``<wrapper>-<arch>``."""


@hookspec
def augmentations() -> Iterable[Augmentation]:
    """Batched data augmentations."""


@hookspec
def optimizers() -> Iterable[Optimizer]:
    """Optimizers."""


@hookspec
def schedulers() -> Iterable[Scheduler]:
    """Learning-rate schedules."""


@hookspec
def trainers() -> Iterable[Trainer]:
    """Training strategies (precision, compilation, memory format)."""


@hookspec
def datasets() -> Iterable[Dataset]:
    """Datasets."""


@hookspec
def loggers() -> Iterable[Logger]:
    """Where runs report: the console, files, experiment trackers."""


@hookspec
def weights() -> Iterable[Weights]:
    """Pretrained weights for architectures (or wrapped models), by tag."""


@hookspec
def exporters() -> Iterable[Exporter]:
    """File formats to deploy trained weights in (torch.export, ONNX, ...)."""


# The hook that returns each kind of spec.
HOOK_OF_KIND = {kind: spec_type.hook for kind, spec_type in KINDS.items()}
