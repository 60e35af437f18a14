"""Parsing of ``key=value`` options typed on the command line (``--set``) and of values given as text."""
from __future__ import annotations

import ast
import re
from typing import Any

from .errors import UserError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def parse_value(text: str) -> Any:
    """A Python literal if it is one (``3``, ``0.5``, ``True``, ``[3, 4]``), else the string."""
    stripped = text.strip()
    if stripped.lower() in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[stripped.lower()]
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_sets(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["width=0.5", "se.reduction=8"]`` -> ``{"width": 0.5, "se": {"reduction": 8}}``.

    A dotted key ``wrapper.option`` is an option of the wrapper of that name.
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise UserError(f"bad --set {pair!r}: expected key=value, e.g. --set width=0.5 or --set se.reduction=8")
        head, dot, tail = key.partition(".")
        if dot:
            group = options.setdefault(head, {})
            if not isinstance(group, dict):
                raise UserError(f"bad --set {pair!r}: {head!r} is both an option and a wrapper")
            group[tail] = parse_value(value)
        else:
            if isinstance(options.get(key), dict):
                raise UserError(f"bad --set {pair!r}: {key!r} is both an option and a wrapper")
            options[key] = parse_value(value)
    return options
