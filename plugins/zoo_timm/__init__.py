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


@hookimpl
def architectures():
    return [
        Architecture(f"timm/{name}", "zoo_timm.build:create", "timm model", options={"model_name": name},
                     family="timm")
        for name in timm_model_names()
    ]
