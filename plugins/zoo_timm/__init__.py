"""Every timm model as ``timm/<name>`` and its pretrained tags as ``timm/<name>.<tag>``, listed from
timm's sources without importing torch; also timm's SE-ResNet weights for zoo's ``se-resnet*``."""
from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

from zoo import Architecture, Weights, hookimpl

_REGISTER = re.compile(r"@register_model\s*(?:\([^)]*\))?\s*\ndef\s+(\w+)\s*\(")
_TAGGED_CONFIG = re.compile(r"^\s*['\"]([\w-]+)\.([\w-]+)['\"]\s*:\s*\w*\(", re.MULTILINE)
# timm's SE-ResNets are zoo's se-resnet: the same state dict, names and all (tests/test_pretrained.py).
SE_RESNETS = {f"seresnet{d}": f"se-resnet{d}" for d in (18, 34, 50, 101, 152)}


@functools.lru_cache(maxsize=None)
def timm_catalogue() -> tuple[list[str], dict[str, list[str]]]:
    """The names timm's ``@register_model`` decorators define, and each one's pretrained tags in the
    order timm declares them (its first is timm's default), read from timm's source files."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return [], {}
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    names, tags = set(), {}
    for source in sorted(models.glob("*.py")):
        text = source.read_text(encoding="utf-8", errors="replace")
        names.update(_REGISTER.findall(text))
        for model, tag in _TAGGED_CONFIG.findall(text):
            if tag != "untrained" and tag not in tags.setdefault(model, []):
                tags[model].append(tag)
    return sorted(names), {model: found for model, found in tags.items() if model in names and found}


def timm_model_names() -> list[str]:
    return timm_catalogue()[0]


# timm options a weights file may set: they change the network, never what it reads or fetches
# (pretrained, checkpoint_path, pretrained_cfg_overlay and cache_dir are refused from files).
TIMM_FILE_OPTIONS = ("drop_rate", "drop_path_rate", "drop_block_rate", "global_pool", "img_size")


@hookimpl
def architectures():
    return [
        Architecture(f"timm/{name}", "zoo_timm.build:create", "timm model", options={"model_name": name},
                     family="timm", unsafe_options=("pretrained",), safe_kwargs=TIMM_FILE_OPTIONS)
        for name in timm_model_names()
    ]


@hookimpl
def weights():
    specs = []
    for model, tags in timm_catalogue()[1].items():
        for i, tag in enumerate(tags):
            specs.append(Weights(f"timm/{model}.{tag}", "zoo_timm.build:describe", "timm pretrained weights",
                                 options={"tag": f"{model}.{tag}"}, arch=f"timm/{model}", default=i == 0))
            if model in SE_RESNETS:  # not the default: se-resnet50 --pretrained is ResNet-50's with new SE blocks
                specs.append(Weights(f"{SE_RESNETS[model]}.{tag}", "zoo_timm.build:describe",
                                     f"timm's {model}.{tag}, fully trained SE blocks",
                                     options={"tag": f"{model}.{tag}"}, arch=SE_RESNETS[model]))
    return specs
