"""Trained weights in a deployment format (an exporter plugin's), verified as they are written: the
exported file, loaded back, must answer a probe batch as the PyTorch model does."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..base.errors import UserError
from ..registry.catalog import Registry, default_registry
from ..registry.factories import plugin_code
from ..base.files import atomic_write
from .weights import load_model
from .metadata import MAX_BATCH, MAX_BATCH_VALUES, fixed_batch_fits

# What a deployed file must carry to be used without zoo's weights: how images become inputs.
CARRIED = ("model", "classes", "num_classes", "in_chans", "input_size", "mean", "std", "padded_from", "crop_pct")


def export_weights(weights: str | Path, format: str = "pt2", out: str | Path | None = None,
                   dynamic_batch: bool = True, overwrite: bool = False, tolerance: float = 1e-4,
                   registry: Registry | None = None, batch_size: int = 1) -> dict[str, Any]:
    """Write ``weights`` as ``format`` to ``out`` (default: beside them, with the format's suffix),
    with the metadata that turns images into its inputs inside the file; return where, and how far
    the exported model's outputs are from the PyTorch model's on a probe batch (at most ``tolerance``,
    relative to the largest output, or nothing is written). The model takes any batch size, or with
    ``dynamic_batch`` False exactly ``batch_size`` images (recorded in the file: zoo predict pads to it)."""
    registry = registry or default_registry()
    spec = registry.get("exporter", format)
    model = load_model(weights, registry=registry).eval()
    meta = model.zoo_meta
    out = _output(Path(weights), Path(out) if out else Path(weights).with_suffix(spec.suffix), overwrite)
    example, probe = _inputs(meta.in_chans or 3, meta.input_size or 224, None if dynamic_batch else batch_size)
    recorded = {key: getattr(meta, key) for key in CARRIED if key in meta.written}
    if not dynamic_batch:
        recorded["batch_size"] = batch_size
    metadata = {"zoo": json.dumps(recorded | {"weights": Path(weights).name})}
    measured: dict[str, float] = {}

    def write_and_verify(path: str) -> None:
        with torch.no_grad():
            expected = model(probe)
        exporter, runner = spec.load(), spec.resolve(spec.runner, "runner")
        with plugin_code(spec, f"could not export {meta.model}", building=False):
            exporter(model, example, Path(path), dynamic_batch=dynamic_batch, metadata=metadata)
            predict, carried = runner(Path(path))
            with torch.no_grad():
                got = predict(probe)
        difference = (got.float() - expected).abs().max().item() / max(1e-12, expected.abs().max().item())
        if got.shape != expected.shape or not difference <= tolerance:
            raise UserError(f"the {spec.name} export of {meta.model} answers differently from the PyTorch model "
                            f"(relative difference {difference:.2e}, tolerance {tolerance:g}); nothing was written")
        if carried != metadata:
            raise UserError(f"the {spec.name} exporter lost the metadata the file must carry; nothing was written")
        measured["difference"] = difference

    try:  # without `overwrite`, created only if still absent when written: checked and made in one step
        atomic_write(out, write_and_verify, replace=overwrite)
    except FileExistsError:
        raise UserError(f"{out} appeared while exporting and is left as it is; choose another `out` or pass "
                        "`overwrite`") from None
    return {"path": str(out), "format": spec.name, "model": meta.model, "dynamic_batch": dynamic_batch,
            "batch_size": None if dynamic_batch else batch_size,
            "relative_difference": measured["difference"], "tolerance": tolerance}


def _inputs(channels: int, size: int, fixed_batch: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The example an exporter traces and the probe its file must answer: a probe of another batch
    size than the example's where any batch is asked for, else both of the fixed batch."""
    if fixed_batch is not None and not fixed_batch_fits(fixed_batch, channels, size):
        raise UserError(f"the fixed batch of an export must be 1..{MAX_BATCH:,} images of at most {MAX_BATCH_VALUES:,} "
                        f"values in all, got {fixed_batch} of {channels}x{size}x{size}")
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(fixed_batch or 2, channels, size, size, generator=generator),
            torch.randn(fixed_batch or 3, channels, size, size, generator=generator))


def _output(weights: Path, out: Path, overwrite: bool) -> Path:
    """Where an export may go: never over the weights it reads, nor over a file unless asked."""
    if os.path.lexists(out) and os.path.realpath(out) == os.path.realpath(weights):
        raise UserError(f"{out} is the weights being exported; choose another `out`")
    if os.path.lexists(out) and not overwrite:
        raise UserError(f"{out} exists; choose another `out` or pass `overwrite`")
    return out
