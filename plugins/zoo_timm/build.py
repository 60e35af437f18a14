"""Builds a timm model with the zoo's standard options."""
from __future__ import annotations

import timm

from zoo import UserError


def create(model_name: str, num_classes: int = 1000, in_chans: int = 3, input_size: int | None = None,
           pretrained: bool = False, **timm_options):
    """``timm.create_model`` without pretrained weights by default (they need a network).

    Convolutional timm models adapt to any input size; those built for one size (ViT, Swin, Mixer:
    ``fixed_input_size`` in timm's pretrained config) are built for ``input_size``, as timm's
    ``img_size`` option would.
    """
    config = timm.models.get_pretrained_cfg(model_name)
    if input_size and config is not None and config.fixed_input_size and "img_size" not in timm_options:
        timm_options["img_size"] = input_size
    try:
        return timm.create_model(model_name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans,
                                 **timm_options)
    except (AssertionError, RuntimeError, TypeError, ValueError) as exc:  # timm checks shapes with assert
        raise UserError(f"timm cannot build {model_name!r}: {exc}") from exc


def describe(tag: str) -> dict:
    """How zoo describes the weights timm's pretrained config ``tag`` names."""
    config = timm.models.get_pretrained_cfg(tag)
    if config is None:
        raise ValueError(f"timm has no pretrained config {tag!r}")
    if config.custom_load:
        raise ValueError(f"timm loads {tag!r} with its own loader (an .npz); use timm.create_model for it")
    if config.hf_hub_id:
        source = {"hf_hub_id": config.hf_hub_id, **({"hf_filename": config.hf_hub_filename}
                                                    if config.hf_hub_filename else {})}
    elif config.url:
        source = {"url": config.url}
    else:
        raise ValueError(f"timm names no file for {tag!r}")
    return {**source, "dataset": tag.rpartition("_")[2] if "_" in tag else "", "num_classes": config.num_classes,
            "input_size": int(config.input_size[-1]), "interpolation": config.interpolation,
            "crop_pct": config.crop_pct, "mean": list(config.mean), "std": list(config.std),
            "license": config.license or "", "classifier": config.classifier or "",
            "first_conv": config.first_conv or "", "origin": "timm"}
