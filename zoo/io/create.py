"""``create_model``: a model built by name, started from trained weights when asked (timm's call)."""
from __future__ import annotations

from typing import Any

from ..models.build import plan_model
from ..registry.catalog import Registry, default_registry
from .pretrained import RegisteredWeights, start_from, starting_weights, trained_options


def create_model(name: str, registry: Registry | None = None, pretrained: bool | str | None = None, **kwargs: Any):
    """Build model ``name`` with architecture options ``kwargs`` (``None`` values are dropped).

    ``pretrained`` starts it from trained weights: True for the model's default ones, a tag
    (``"tv2_in1k"``, ``"resnet50.tv2_in1k"``) or a zoo weights file (``"run.safetensors"``); a classifier
    for another class count starts new. ``model.zoo_pretrained`` then says what was loaded and changed.

    Wrapper options go in a dict under the wrapper's name: ``create_model("se-vgg16",
    se={"placement": "stage"})``. The model remembers how it was built in ``model.zoo_config``,
    which is what weights files store.
    """
    registry = registry or default_registry()
    source = starting_weights(pretrained)
    if isinstance(source, RegisteredWeights):  # built as the weights were trained; what is given wins
        kwargs = {**trained_options(name, source, registry), **kwargs}
    model, build_base = plan_model(name, registry, kwargs).build()
    if source is not None:
        model.zoo_pretrained = start_from(model, name, source, registry, build_base=build_base)
    return model
