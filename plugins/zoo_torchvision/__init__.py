"""torchvision's ImageNet weights for zoo's VGG and ResNet, whose state dicts use torchvision's names.

Listed from torchvision's own weights declarations (its ``*_Weights`` enums, read from its source files
without importing torch); used through torchvision's weights API (``torchvision.models.get_weight``).
"""
from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from zoo import Weights, hookimpl

# zoo model -> (torchvision module, weights enum): the networks torchvision and zoo build alike.
MODELS = {
    **{f"vgg{d}{bn}": ("vgg", f"VGG{d}{bn.upper()}_Weights") for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    **{f"resnet{d}": ("resnet", f"ResNet{d}_Weights") for d in (18, 34, 50, 101, 152)},
}
# torchvision's member names as timm tags them: IMAGENET1K_V1 is "tv_in1k", V2 "tv2_in1k".
TAGS = {"IMAGENET1K_V1": "tv_in1k", "IMAGENET1K_V2": "tv2_in1k"}


@functools.lru_cache(maxsize=None)
def declared(module: str) -> dict[str, tuple[list[tuple[str, float | None]], str]]:
    """``{enum: ([(member, top-1), ...], default member)}`` as torchvision's ``models/<module>.py``
    declares them (members without ImageNet classifier weights, as VGG16's FEATURES, are left out)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return {}
    source = Path(next(iter(spec.submodule_search_locations))) / "models" / f"{module}.py"
    enums = {}
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.ClassDef):
            continue
        members, default = [], ""
        for item in node.body:
            if isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name):
                name = item.targets[0].id
                if name == "DEFAULT" and isinstance(item.value, ast.Name):
                    default = item.value.id
                elif name in TAGS and isinstance(item.value, ast.Call):
                    members.append((name, _top1(item.value)))
        if members:
            enums[node.name] = (members, default)
    return enums


def _top1(call: ast.Call) -> float | None:
    for node in ast.walk(call):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "acc@1" and isinstance(value, ast.Constant):
                    return float(value.value)
    return None


@hookimpl
def weights():
    specs = []
    for model, (module, enum) in MODELS.items():
        members, default = declared(module).get(enum, ([], ""))
        for member, top1 in members:
            specs.append(Weights(
                f"{model}.{TAGS[member]}", "zoo_torchvision.source:describe",
                f"torchvision {enum}.{member}: ImageNet-1k" + (f", top-1 {top1:.2f} %" if top1 else ""),
                options={"enum": f"{enum}.{member}"}, arch=model, default=member == default, accuracy=top1))
    return specs
