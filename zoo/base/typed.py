"""Values that arrive untyped (JSON files, the Python API) checked against the type hints that declare
them: one reading of the hints, not a parser of their text."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping, Sequence, Union


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of type ``hint``: plain types (an int is a float, a bool is neither),
    ``X | None``, ``list[X]``, ``tuple[X, ...]`` (a JSON list), ``dict[str, X]`` and ``Any``."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if origin in (list, Sequence, tuple):
        item = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(conforms(v, item) for v in value)
    if origin in (dict, Mapping):
        key, item = args or (Any, Any)
        return isinstance(value, dict) and all(conforms(k, key) and conforms(v, item) for k, v in value.items())
    return isinstance(value, origin or hint)


def spelled(hint: Any) -> str:
    """``hint`` as it is written in the source: ``dict[str, Any]``, ``str | None``."""
    return (hint.__name__ if isinstance(hint, type) and not typing.get_args(hint) else str(hint)).replace("typing.", "")


def wrong_fields(record: Any) -> list[tuple[str, Any, Any]]:
    """``(name, hint, value)`` of each field of the dataclass ``record`` whose value is not of its type."""
    hints = typing.get_type_hints(type(record))
    return [(f.name, hints[f.name], getattr(record, f.name)) for f in dataclasses.fields(record)
            if not conforms(getattr(record, f.name), hints[f.name])]
