"""Every timm model as ``timm/<name>``, listed from timm's sources without importing torch."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from zoo import Architecture, hookimpl

_REGISTER = re.compile(r"@register_model\s*(?:\([^)]*\))?\s*\ndef\s+(\w+)\s*\(")


def timm_model_names() -> list[str]:
    """The names timm's ``@register_model`` decorators define, read from its source files."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return []
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    names = set()
    for source in models.glob("*.py"):
        names.update(_REGISTER.findall(source.read_text(encoding="utf-8", errors="replace")))
    return sorted(names)


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
