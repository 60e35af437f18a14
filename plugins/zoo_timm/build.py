"""Builds a timm model with the zoo's standard options."""
from __future__ import annotations

import timm

from zoo import UserError


def create(model_name: str, num_classes: int = 1000, in_chans: int = 3, input_size: int | None = None,
           pretrained: bool = False, **timm_options):
    """``timm.create_model`` without pretrained weights by default (they need a network).

    ``input_size`` is accepted for the zoo's contract; convolutional timm models adapt to any size.
    """
    try:
        return timm.create_model(model_name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans,
                                 **timm_options)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UserError(f"timm cannot build {model_name!r}: {exc}") from exc
