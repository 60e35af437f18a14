"""What a torchvision weights enum member says about its weights, as zoo describes weights."""
from __future__ import annotations

from torchvision.models import get_weight


def describe(enum: str) -> dict:
    weights = get_weight(enum)
    preprocess = weights.transforms()
    top1 = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    return {
        "url": weights.url,  # its file name carries the first hex digits of its SHA-256, as torch.hub checks
        "dataset": "imagenet-1k",
        "classes": list(weights.meta["categories"]),
        "num_classes": len(weights.meta["categories"]),
        "input_size": int(preprocess.crop_size[0]),
        "resize_size": int(preprocess.resize_size[0]),
        "interpolation": preprocess.interpolation.value,
        "mean": list(preprocess.mean),
        "std": list(preprocess.std),
        "license": "bsd-3-clause",
        "accuracy": top1,
        "recipe": weights.meta.get("recipe", ""),
        "origin": "torchvision",
    }
