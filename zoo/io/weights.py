"""Weights and checkpoints as safetensors: tensors plus JSON metadata, written atomically, no pickle."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..base.version import __version__
from ..base.errors import UserError, first_line
from ..base.files import atomic_write, parse_json, regular_file
from ..models.build import plan_model
from ..registry.catalog import GivenObject, Registry, default_registry
from ..registry.factories import check_file_options
from ..registry.specs import split_qualified
from .metadata import FORMAT, WeightsMetadata

META_KEY = "zoo"  # the JSON document in a weights file's metadata


def inner_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DistributedDataParallel and torch.compile wrappers."""
    from torch.nn.parallel import DistributedDataParallel

    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def clean_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state of the model inside any wrappers (:func:`inner_model`), as contiguous, unshared CPU tensors."""
    state = inner_model(model).state_dict()
    return {key: tensor.detach().to("cpu").contiguous().clone() for key, tensor in state.items()}


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str], replace: bool = True) -> Path:
    """Write a safetensors file atomically (see :func:`atomic_write`)."""
    def write(tmp: str) -> None:
        try:
            save_file(tensors, tmp, metadata=metadata)
        except SafetensorError as exc:  # a full disk, a read-only folder: safetensors wraps the OSError
            raise OSError(str(exc).rpartition("I/O error: ")[2]) from exc

    return atomic_write(path, write, replace)


def read_header(path: Path, what: str = "weights") -> tuple[dict[str, tuple[int, ...]], dict[str, Any]]:
    """The tensor shapes and the decoded zoo metadata of a safetensors file, without reading its tensors."""
    from safetensors import safe_open

    path = regular_file(path, what)
    try:
        with safe_open(path, "pt") as f:
            metadata = f.metadata() or {}
            shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path} is not a zoo {what} file or is truncated/corrupt ({type(exc).__name__})") from exc
    if META_KEY not in metadata:
        raise UserError(f"{path} is a safetensors file without zoo's metadata; zoo cannot rebuild its model")
    document = parse_json(metadata[META_KEY], f"the metadata of {path}")
    if not isinstance(document, dict):
        raise UserError(f"the metadata of {path} is not a table")
    return shapes, document


def read_tensors(path: Path, what: str = "weights") -> dict[str, torch.Tensor]:
    try:
        return load_file(regular_file(path, what))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path} is not a zoo {what} file or is truncated/corrupt ({type(exc).__name__})") from exc


def read_safetensors(path: Path, what: str = "weights") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the decoded zoo metadata of a file we wrote; a clear error for anything else."""
    _, document = read_header(path, what)
    return read_tensors(path, what), document


def read_metadata(path: Path) -> WeightsMetadata:
    """The checked zoo metadata of a weights file, without reading its tensors."""
    return WeightsMetadata.checked(read_header(path)[1], path)


def require_fields(meta: WeightsMetadata, path: Path, *fields: str) -> None:
    """Refuse weights without the data fields a command needs (a file saved by hand may lack them)."""
    missing = [f for f in fields if f not in meta.written]
    if missing:
        raise UserError(f"{path} does not record {', '.join(missing)}; it was not written by zoo train")


def save_weights(model: torch.nn.Module, path: str | os.PathLike, replace: bool = True, **info: Any) -> Path:
    """Save ``model`` with what rebuilds it (its ``zoo_config``) and ``info`` (classes, metrics, ...);
    without ``replace``, an existing file is an error, never overwritten."""
    config = getattr(model, "zoo_config", None)
    if config is None:
        raise UserError("this model was not built by zoo.create_model, so it cannot be rebuilt from its weights")
    meta = WeightsMetadata.checked({"format": FORMAT, "zoo_version": __version__, **config, **info}, Path(path))
    return atomic_save(clean_state_dict(model), Path(path), {META_KEY: json.dumps(meta.document())}, replace)


def load_model(path: str | os.PathLike, registry=None) -> torch.nn.Module:
    """Rebuild the model saved in ``path`` and load its weights; ``model.zoo_meta`` holds the metadata
    (a :class:`WeightsMetadata`).

    The file is untrusted: its metadata is checked (:class:`WeightsMetadata`), the model is built only
    from options its plugins declare safe to take from a file, and the tensors' shapes are compared
    with a model built on the meta device before anything is allocated. Nothing is fetched or written.
    """

    path = Path(path)
    shapes, document = read_header(path)
    meta = WeightsMetadata.checked(document, path)
    build = model_from_metadata(meta, path, registry)
    expected = _meta_shapes(build)
    if expected is not None and expected != shapes:
        raise UserError(f"{path}: the weights do not fit {meta.model!r} ({_shape_difference(expected, shapes)})")
    model = build()
    try:
        model.load_state_dict(read_tensors(path), strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path}: the weights do not fit {meta.model!r} ({first_line(exc)})") from exc
    model.zoo_meta = meta
    return model.eval()


def model_from_metadata(meta: WeightsMetadata, path: Any, registry: Registry | None = None) -> Callable[[], Any]:
    """A function building the model a weights file's (checked) metadata describes, after every option
    passed :func:`check_file_options`. A missing plugin is named, as the metadata records it."""
    registry = registry or default_registry()
    given = GivenObject.named(meta.model)
    if given is not None:
        raise UserError(f"{path} holds the weights of a model given to zoo.train as a module "
                        f"({given.what}): build it yourself and load them with "
                        f"model.load_state_dict(safetensors.torch.load_file(...))")
    try:
        wrappers, arch = registry.resolve_model(meta.model)
    except UserError as error:
        missing = registry.missing({split_qualified(name)[0] for name in [meta.architecture, *meta.wrappers]
                                    if ":" in name})
        if missing:
            raise UserError(f"{path} was made with plugin {', '.join(map(repr, missing))}, which is not installed "
                            f"here (model {meta.model!r}); install it to use these weights") from error
        raise
    options = dict(meta.options)
    source = f"{path}"
    for wrapper in wrappers:
        check_file_options(wrapper, wrapper.load(), options.get(wrapper.name, {}), skip=2, source=source)
    arch_options = {k: v for k, v in options.items() if k not in {w.name for w in wrappers}}
    check_file_options(arch, arch.load(), arch_options, source=source)
    plan = plan_model(meta.model, registry, options, resolved=(wrappers, arch))
    return lambda: plan.build()[0]


def _meta_shapes(build) -> dict[str, tuple[int, ...]] | None:
    """The state-dict shapes of the model ``build()`` makes, built on the meta device (no memory); None
    for a model that cannot be built there (some factories read tensor values while building)."""
    try:
        with torch.device("meta"):
            model = build()
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - the real build then checks the file, as it always did
        return None
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def _shape_difference(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> str:
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        return (f"missing {len(missing)} tensors, e.g. {missing[0]}" if missing else
                f"{len(extra)} unexpected tensors, e.g. {extra[0]}")
    key = next(k for k in expected if expected[k] != found[k])
    return f"{key} is {list(found[key])} in the file, {list(expected[key])} in the model"


def describe_weights(path: str | os.PathLike) -> dict[str, Any]:
    """What a weights file holds, from its checked metadata, tensors left unread: ``zoo info WEIGHTS``."""
    meta = read_metadata(Path(path))
    metrics, trainer, size = meta.metrics, meta.trainer, meta.input_size
    versions = meta.provenance.get("versions", {"zoo": meta.zoo_version})
    return {"weights": str(path), "model": meta.model, "architecture": meta.architecture or None,
            "wrappers": meta.wrappers, "options": meta.options, "data": meta.dataset,
            "classes": meta.classes, "input": [meta.in_chans, size, size],
            "mean": meta.mean, "std": meta.std, "parameters": meta.parameters,
            "trainer": trainer.get("name"), "precision": trainer.get("precision"), "epochs": metrics.get("epoch"),
            "test_accuracy": metrics.get("test_accuracy"), "test_loss": metrics.get("test_loss"),
            "plugins": meta.plugins, "versions": versions}
