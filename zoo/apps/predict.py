"""Top-k classes of image files (folders, patterns) under a weights file's model, in batches, each image
shaped as evaluation saw its dataset's; an unreadable image is reported, not fatal."""
from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..data.augmenter import Normalize
from ..data.images import IMAGE_SUFFIXES, open_image
from ..base.errors import PluginError, UserError, first_line, one_line
from ..registry.catalog import Registry, default_registry
from ..io.metadata import WeightsMetadata
from ..io.weights import load_model, require_fields
from ..base.files import parse_json, regular_file


MAX_IMAGES = 1_000_000  # a pattern or folder that names more is a mistake (a link to /), not a batch


def image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """The images ``inputs`` name: files as given, folders searched recursively for image files, shell
    patterns (``"photos/**/*.jpg"``) expanded; a path that names nothing is kept, to be reported.
    Links to folders are not followed (a link to / or a loop would never end), hidden names are skipped
    as the shell skips them, and more than MAX_IMAGES is refused."""
    found: list[Path] = []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in _walk(path) if p.suffix.lower() in IMAGE_SUFFIXES)
        elif not os.path.lexists(path) and glob.has_magic(item):
            found += sorted(_matching(item))
        else:
            found.append(path)
        if len(found) > MAX_IMAGES:
            raise UserError(f"{one_line(item)} names more than {MAX_IMAGES:,} files; predict fewer at a time")
    return found


def _walk(folder: Path) -> Iterator[Path]:
    count = 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith("."):
                count += 1
                if count > MAX_IMAGES:
                    raise UserError(f"{folder} holds more than {MAX_IMAGES:,} files; predict fewer at a time")
                yield Path(root) / name


def _matching(pattern: str) -> Iterator[Path]:
    """The files a shell pattern matches (``**`` for any depth), found by walking its fixed leading
    folder without following links."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    if root.is_dir():
        for path in _walk(root):
            relative = path.relative_to(root)
            if _matches(relative.parts, parts[fixed:]):
                yield root / relative if fixed else relative


def _matches(names: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Whether path components ``names`` match the pattern's components, ``**`` standing for any
    number of them, each other one as fnmatch matches a name (case-sensitive, as glob on POSIX)."""
    if not pattern:
        return not names
    if pattern[0] == "**":
        return any(_matches(names[i:], pattern[1:]) for i in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], pattern[0]) and _matches(names[1:], pattern[1:])


def iter_predictions(weights: str | Path, images: Sequence[str | Path], top_k: int = 3, batch_size: int = 64,
                     device: str | None = None, registry: Registry | None = None) -> Iterator[dict[str, Any]]:
    """For each image (:func:`image_paths` of ``images``), in order, ``{"image": path, "top": [{"class",
    "probability"}, ...]}``, or ``{"image": path, "error": why}`` for one that cannot be read; the
    model sees ``batch_size`` images at a time, on ``device``."""
    if top_k < 1 or batch_size < 1:
        raise UserError(f"`top_k` and `batch_size` must be positive, got {top_k} and {batch_size}")
    model, meta, target = _predictor(Path(weights), device, registry or default_registry())
    require_fields(meta, weights, "input_size", "in_chans", "classes", "mean", "std")
    if meta.classes is None or meta.in_chans not in (1, 3):
        raise UserError(f"{weights} records no class names, or {meta.in_chans!r} input channels: zoo predict "
                        "reads grey (1) or colour (3) images into a model that names its classes")
    classes, normalize, k = meta.classes, Normalize(meta.mean, meta.std), min(top_k, len(meta.classes))
    paths = image_paths(images)
    for start in range(0, len(paths), batch_size):
        arrays, readable, results = [], [], {}
        for path in paths[start:start + batch_size]:
            try:
                arrays.append(_as_trained(path, meta.input_size, meta.in_chans, meta.padded_from, meta.crop_pct))
                readable.append(path)
            except UserError as error:
                results[path] = {"image": str(path), "error": str(error)}
        if arrays:
            x = normalize(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(target))
            with torch.inference_mode():
                try:
                    top = model(x).float().softmax(1).topk(k, dim=1)
                except Exception as exc:  # an exported file's fixed shapes, in its runtime's own error types
                    if isinstance(exc, (UserError, PluginError)) or Path(weights).suffix == ".safetensors":
                        raise
                    raise UserError(f"{weights} cannot take a batch of {len(x)} images of {tuple(x.shape[1:])} "
                                    f"({first_line(exc)}); export it again (any batch size is the default), or "
                                    "predict with the `batch_size` it was exported for") from exc
            for path, values, indices in zip(readable, top.values.tolist(), top.indices.tolist()):
                results[path] = {"image": str(path), "top": [{"class": classes[i], "probability": p}
                                                             for p, i in zip(values, indices)]}
        yield from (results[path] for path in paths[start:start + batch_size])


def _predictor(path: Path, device: str | None, registry: Registry):
    """The model of a zoo weights file on ``device``, or an exported file's (an exporter's suffix) as its
    runtime loads it, on the CPU; with the checked metadata that says how images become its inputs."""
    from ..training.trainer import usable_device

    if path.suffix == ".safetensors":
        target = usable_device(device)
        model = load_model(path, registry=registry).to(target)
        return model, model.zoo_meta, target
    exporter = next((e for e in registry.items("exporter") if e.suffix and e.suffix == path.suffix), None)
    if exporter is None:
        raise UserError(f"{path} is neither zoo weights (.safetensors) nor a file an exporter writes "
                        f"({', '.join(e.suffix for e in registry.items('exporter'))})")
    regular_file(path, "exported model")
    run, carried = exporter.resolve(exporter.runner, "runner")(path)
    document = parse_json(carried.get("zoo", ""), f"the zoo metadata of {path}")
    if not isinstance(document, dict):
        raise UserError(f"{path} carries no zoo metadata (it was not written by zoo export)")
    meta = WeightsMetadata.checked(document, path)
    return (run if meta.batch_size is None else _in_batches_of(meta.batch_size, run)), meta, usable_device("cpu")


def _in_batches_of(size: int, run):
    """``run`` of a model exported for batches of exactly ``size``, on any batch: split, the last part
    padded with blank images whose answers are dropped."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        answers = []
        for part in x.split(size):
            blank = part.new_zeros(size - len(part), *part.shape[1:])
            answers.append(run(torch.cat([part, blank]))[:len(part)])
        return torch.cat(answers)

    return predict


def predict(weights: str | Path, images: Sequence[str | Path], top_k: int = 3, batch_size: int = 64,
            device: str | None = None, registry: Registry | None = None) -> list[dict[str, Any]]:
    """:func:`iter_predictions` as a list: what ``zoo predict --json`` prints."""
    return list(iter_predictions(weights, images, top_k, batch_size, device, registry))


def _as_trained(path: Path, size: int, channels: int, padded_from: int | None, crop_pct: float | None) -> np.ndarray:
    """An image as evaluation saw its dataset's: resized to the side the model saw, or to the original
    side then zero-padded when the dataset was padded (Fashion-MNIST's 28 in 32), or decoded as the
    streamed evaluation decodes (a centre crop of ``crop_pct``) when the data was streamed from files."""
    from PIL import Image

    if crop_pct:  # streamed data: the evaluation's own decoder, so predict sees what eval saw
        from ..data.streaming import Decoder

        image, label = Decoder([str(path)], torch.zeros(1, dtype=torch.long), size, channels, crop_pct, None)[0]
        if label < 0:
            raise UserError(f"{path} is not an image zoo can read")
        return image.permute(1, 2, 0).numpy()
    side = padded_from or size
    margin = (size - side) // 2
    try:
        with open_image(path) as img:
            img.draft("L" if channels == 1 else "RGB", (side, side))  # a large JPEG decodes at 1/2 to 1/8 scale
            img = img.convert("L" if channels == 1 else "RGB")
            img = img.resize((side, side), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8).reshape(side, side, channels)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a corrupt file (ValueError for a text bomb)
        raise UserError(f"{one_line(str(path))} is not an image zoo can read ({type(exc).__name__})") from exc
    return np.pad(array, ((margin, size - side - margin), (margin, size - side - margin), (0, 0)))
