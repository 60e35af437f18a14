"""Weights and checkpoints as safetensors: tensors plus JSON metadata, written atomically, no pickle."""
from __future__ import annotations

import contextlib
import glob
import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import UserError

META_KEY = "zoo"  # the JSON document in a weights file's metadata
STALE_SECONDS = 3600  # a temporary file this old was left by a killed write, not one in progress
MAX_INPUT_SIZE = 2048  # pixels a side: a VGG's first map is then 1 GB per image; larger is no classic CNN's input


def clean_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous, unshared CPU tensors, without DDP's ``module.`` or torch.compile's ``_orig_mod.``."""
    state = {}
    for key, tensor in model.state_dict().items():
        for prefix in ("_orig_mod.", "module."):
            key = key.removeprefix(prefix)
        state[key] = tensor.detach().to("cpu").contiguous().clone()
    return state


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str], replace: bool = True) -> Path:
    """Write a safetensors file atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), replace)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write(path: Path, write, replace: bool = True) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, then move it in place: a crash or a full disk
    leaves the old file (or none), never a partial one. Without ``replace`` an existing ``path`` is
    never replaced, even one that appeared while writing (FileExistsError). The file gets the mode the umask gives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a killed write, long ago
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                stale.unlink()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's (and a writer's) 0600 would hide the file from others
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: no run replaces another's file
    except FileExistsError:
        raise  # the caller decides where the file goes instead
    except (OSError, SafetensorError) as exc:  # a full disk, a read-only folder (safetensors wraps the OSError)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).rpartition("I/O error: ")[2]
        raise UserError(f"cannot write {path}: {reason}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def folders_removed_on_failure(folder: Path):
    """Make ``folder`` (and its missing parents) for what the block writes there; if the block fails,
    remove the folders it made (left empty): a failed download leaves nothing behind."""
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for path in made:  # the deepest first; a folder something else wrote into stays
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def parse_json(text: str | bytes, what: str) -> Any:
    """JSON from a file we did not necessarily write: no NaN or Infinity, no nesting deep enough to
    exhaust the stack; one clear error otherwise."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not a number")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise UserError(f"{what} is nested too deeply to be zoo's") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} is not valid JSON ({str(exc).splitlines()[0][:80]})") from None


def regular_file(path: Path, what: str) -> Path:
    """``path`` if it is a regular file: a FIFO or a device would block or never end when read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        raise UserError(f"{what} file {path} does not exist") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} file {path} is not a regular file")
    return path


def read_bounded(path: Path, what: str, limit: int, as_what: str) -> bytes:
    """A regular file's bytes, refused past ``limit``: at most ``limit + 1`` bytes are read, whatever
    the file claims or becomes meanwhile. ``as_what`` names it in the refusal ("a run config")."""
    with open(regular_file(path, what), "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise UserError(f"{path} is larger than {as_what} could be ({limit >> 20} MB)")
    return data


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


def read_metadata(path: Path) -> dict[str, Any]:
    """The checked zoo metadata of a weights file, without reading its tensors."""
    document = read_header(path)[1]
    check_document(document, path)
    return document


def check_document(document: dict[str, Any], path: Path) -> None:
    """Refuse weights metadata of the wrong shape with one clear line: what the rest of zoo reads from
    it (sizes, classes, normalisation) is then of the right type and within bounds."""
    def bad(field: str, expected: str) -> UserError:
        return UserError(f"{path}: metadata field {field!r} must be {expected}")

    def integer(field: str, low: int, high: int) -> None:
        value = document.get(field)
        if value is not None and (type(value) is not int or not low <= value <= high):
            raise bad(field, f"a whole number in {low}..{high}")

    if "history" in document:  # what a run writes as it goes: model, optimizer and RNG state
        raise UserError(f"{path} is a run's checkpoint, for zoo train --resume; use the weights file the run "
                        "writes when it ends")
    if not isinstance(document.get("model"), str) or not 0 < len(document["model"]) <= 256:
        raise bad("model", "a model name")
    if not isinstance(document.get("options", {}), dict):
        raise bad("options", "a table")
    for field in ("architecture", "dataset"):
        if field in document and not isinstance(document[field], str):
            raise bad(field, "text")
    if not isinstance(document.get("wrappers", []), list) or not all(
            isinstance(w, str) for w in document.get("wrappers", [])):
        raise bad("wrappers", "a list of names")
    integer("in_chans", 1, 64)
    integer("input_size", 1, MAX_INPUT_SIZE)
    integer("num_classes", 1, 100_000)
    integer("padded_from", 1, document.get("input_size") or MAX_INPUT_SIZE)
    classes = document.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not classes or len(classes) > 100_000 or not all(
                isinstance(c, str) and len(c) <= 1000 for c in classes):
            raise bad("classes", "a list of class names")
        if document.get("num_classes", len(classes)) != len(classes):
            raise bad("num_classes", f"the number of classes ({len(classes)})")
    for field, low in (("mean", -1e6), ("std", 1e-12)):
        values = document.get(field)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != document.get("in_chans", len(values)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= 1e6 for v in values):
            raise bad(field, "one number per channel" + (", each positive" if field == "std" else ""))
    for field in ("trainer", "metrics", "plugins", "provenance", "data_options"):
        if not isinstance(document.get(field, {}), dict):
            raise bad(field, "a table")
    crop = document.get("crop_pct", 1.0)
    if not isinstance(crop, (int, float)) or isinstance(crop, bool) or not 0.05 <= crop <= 1:
        raise bad("crop_pct", "a number in 0.05..1")
    if not isinstance(document.get("pretrained", ""), str) or len(document.get("pretrained", "")) > 4096:
        raise bad("pretrained", "the name of the weights the run started from")
    integer("parameters", 0, 10**12)
    for key, value in document.get("metrics", {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise bad(f"metrics.{key}", "a number")
    if not isinstance(document.get("provenance", {}).get("versions", {}), dict):
        raise bad("provenance.versions", "a table")
    trainer = document.get("trainer", {})
    if not isinstance(trainer.get("name", ""), str) or not isinstance(trainer.get("options", {}), dict):
        raise bad("trainer", "a table with a name and options")


def require_fields(document: dict[str, Any], path: Path, *fields: str) -> None:
    """Refuse weights without the data fields a command needs (a file saved by hand may lack them)."""
    missing = [f for f in fields if f not in document]
    if missing:
        raise UserError(f"{path} does not record {', '.join(missing)}; it was not written by zoo train")


def save_weights(model: torch.nn.Module, path: str | os.PathLike, replace: bool = True, **info: Any) -> Path:
    """Save ``model`` with what rebuilds it (its ``zoo_config``) and ``info`` (classes, metrics, ...);
    without ``replace``, an existing file is an error, never overwritten."""
    config = getattr(model, "zoo_config", None)
    if config is None:
        raise UserError("this model was not built by zoo.create_model, so it cannot be rebuilt from its weights")
    document = {"zoo_version": __version__, **config, **info}
    return atomic_save(clean_state_dict(model), Path(path), {META_KEY: json.dumps(document)}, replace)


def load_model(path: str | os.PathLike, registry=None) -> torch.nn.Module:
    """Rebuild the model saved in ``path`` and load its weights; ``model.zoo_meta`` holds the metadata.

    The file is untrusted: its metadata is checked (:func:`check_document`), the model is built only
    from options its plugins declare safe to take from a file, and the tensors' shapes are compared
    with a model built on the meta device before anything is allocated. Nothing is fetched or written.
    """
    from .models import model_from_metadata

    path = Path(path)
    shapes, document = read_header(path)
    check_document(document, path)
    build = model_from_metadata(document, path, registry)
    expected = _meta_shapes(build)
    if expected is not None and expected != shapes:
        raise UserError(f"{path}: the weights do not fit {document['model']!r} ({_shape_difference(expected, shapes)})")
    model = build()
    try:
        model.load_state_dict(read_tensors(path), strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path}: the weights do not fit {document['model']!r} ({str(exc).splitlines()[0]})") from exc
    model.zoo_meta = document
    return model.eval()


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
    metrics, trainer = meta.get("metrics", {}), meta.get("trainer", {})
    versions = meta.get("provenance", {}).get("versions", {"zoo": meta.get("zoo_version", "")})
    size = meta.get("input_size")
    return {"weights": str(path), "model": meta["model"], "architecture": meta.get("architecture"),
            "wrappers": meta.get("wrappers", []), "options": meta.get("options", {}), "data": meta.get("dataset"),
            "classes": meta.get("classes"), "input": [meta.get("in_chans"), size, size],
            "mean": meta.get("mean"), "std": meta.get("std"), "parameters": meta.get("parameters"),
            "trainer": trainer.get("name"), "precision": trainer.get("precision"), "epochs": metrics.get("epoch"),
            "test_accuracy": metrics.get("test_accuracy"), "test_loss": metrics.get("test_loss"),
            "plugins": meta.get("plugins", {}), "versions": versions}
