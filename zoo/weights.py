"""Weights and checkpoints as safetensors: tensors plus JSON metadata, written atomically, no pickle."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import UserError

META_KEY = "zoo"  # the JSON document in a weights file's metadata


def clean_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous, unshared CPU tensors, without DDP's ``module.`` or torch.compile's ``_orig_mod.``."""
    state = {}
    for key, tensor in model.state_dict().items():
        for prefix in ("_orig_mod.", "module."):
            key = key.removeprefix(prefix)
        state[key] = tensor.detach().to("cpu").contiguous().clone()
    return state


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    """Write to a temporary file beside ``path``, then rename: a crash leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_safetensors(path: Path, what: str = "weights") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the decoded zoo metadata of a file we wrote; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file {path} does not exist")
    try:
        tensors = load_file(path)
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            metadata = f.metadata() or {}
        document = json.loads(metadata[META_KEY])
    except (SafetensorError, OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a zoo {what} file or is truncated/corrupt ({type(exc).__name__})") from exc
    return tensors, document


def read_metadata(path: Path) -> dict[str, Any]:
    """The zoo metadata of a weights file, without reading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(Path(path), "pt") as f:
            return json.loads((f.metadata() or {})[META_KEY])
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path} is not a zoo weights file or is truncated/corrupt ({type(exc).__name__})") from exc


def save_weights(model: torch.nn.Module, path: str | os.PathLike, **info: Any) -> Path:
    """Save ``model`` with what rebuilds it (its ``zoo_config``) and ``info`` (classes, metrics, ...)."""
    config = getattr(model, "zoo_config", None)
    if config is None:
        raise UserError("this model was not built by zoo.create_model, so it cannot be rebuilt from its weights")
    document = {"zoo_version": __version__, **config, **info}
    return atomic_save(clean_state_dict(model), Path(path), {META_KEY: json.dumps(document)})


def load_model(path: str | os.PathLike, registry=None) -> torch.nn.Module:
    """Rebuild the model saved in ``path`` and load its weights; ``model.zoo_meta`` holds the metadata."""
    from .models import create_model

    tensors, document = read_safetensors(Path(path))
    if "history" in document:  # what a run writes as it goes: model, optimizer and RNG state
        raise UserError(f"{path} is a run's checkpoint, for zoo train --resume; use the weights file the run "
                        "writes when it ends")
    model = create_model(document["model"], registry=registry, **document.get("options", {}))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path}: the weights do not fit {document['model']!r} ({str(exc).splitlines()[0]})") from exc
    model.zoo_meta = document
    return model.eval()
