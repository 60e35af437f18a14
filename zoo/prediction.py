"""Top-k classes of image files under a weights file's model, each image shaped as in training."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .augmenter import Normalize
from .data import open_image
from .errors import UserError
from .registry import Registry
from .weights import load_model, require_fields


def predict(weights: str | Path, images: Sequence[str | Path], top_k: int = 3,
            registry: Registry | None = None) -> list[dict[str, Any]]:
    """``[{"image": path, "top": [{"class": ..., "probability": ...}, ...]}, ...]``: what ``zoo predict`` prints."""
    if top_k < 1:
        raise UserError(f"--top-k must be positive, got {top_k}")
    model = load_model(weights, registry=registry)
    meta = model.zoo_meta
    require_fields(meta, weights, "input_size", "in_chans", "classes", "mean", "std")
    classes = meta["classes"]
    batch = np.stack([_as_trained(Path(path), meta["input_size"], meta["in_chans"], meta.get("padded_from"),
                                  meta.get("crop_pct")) for path in images])
    x = Normalize(meta["mean"], meta["std"])(torch.from_numpy(batch).permute(0, 3, 1, 2))
    with torch.inference_mode():
        top = model(x).softmax(1).topk(min(top_k, len(classes)), dim=1)
    return [{"image": str(path), "top": [{"class": classes[i], "probability": p}
                                         for p, i in zip(values.tolist(), indices.tolist())]}
            for path, values, indices in zip(images, top.values, top.indices)]


def _as_trained(path: Path, size: int, channels: int, padded_from: int | None, crop_pct: float | None) -> np.ndarray:
    """An image as evaluation saw its dataset's: resized to the side the model saw, or to the original
    side then zero-padded when the dataset was padded (Fashion-MNIST's 28 in 32), or its centre crop
    of ``crop_pct`` resized when the data was streamed from files."""
    from PIL import Image, UnidentifiedImageError

    from .streaming import centre_crop

    side = padded_from or size
    margin = (size - side) // 2
    try:
        with open_image(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            img = img.resize((side, side), Image.Resampling.BILINEAR,
                             box=centre_crop(img.size, crop_pct) if crop_pct else None)
            array = np.asarray(img, dtype=np.uint8).reshape(side, side, channels)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path} is not an image zoo can read ({type(exc).__name__})") from exc
    return np.pad(array, ((margin, size - side - margin), (margin, size - side - margin), (0, 0)))
