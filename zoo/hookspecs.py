"""The hooks a plugin may implement. Each returns an iterable of specs of one kind.

A plugin is any module registered under the ``zoo.plugins`` entry-point group that defines some of
these functions, decorated with :data:`zoo.hookimpl`.
"""
from __future__ import annotations

from typing import Iterable

import pluggy

from .specs import Architecture, Augmentation, Dataset, Optimizer, Scheduler, Trainer, Wrapper

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


# The hook that returns each kind of spec.
HOOK_OF_KIND = {
    "arch": "architectures",
    "wrapper": "wrappers",
    "aug": "augmentations",
    "opt": "optimizers",
    "sched": "schedulers",
    "trainer": "trainers",
    "data": "datasets",
}
