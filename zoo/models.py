"""Building models by name: ``create_model("se-vgg16", num_classes=10)``."""
from __future__ import annotations

import inspect
import json
from typing import Any, Callable

from .errors import UserError
from .registry import Registry, default_registry, matches
from .specs import Architecture, Spec

# Options every architecture factory accepts; callers may always pass them.
STANDARD_OPTIONS = ("num_classes", "in_chans", "input_size")


def list_models(pattern: str | None = None, registry: Registry | None = None) -> list[str]:
    """Model names matching a shell-style ``pattern`` (``'*resnet*'``), naturally sorted."""
    names = (registry or default_registry()).model_names()
    return [n for n in names if matches(n, pattern)] if pattern else names


def check_options(spec: Spec, factory: Callable[..., Any], options: dict[str, Any], skip: int = 0) -> None:
    """Refuse options the factory does not take, naming the ones it does."""
    try:
        params = list(inspect.signature(factory).parameters.values())[skip:]
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        takes = ", ".join(sorted(k for k in known if not k.startswith("attn_"))) or "no options"
        raise UserError(f"{spec.word} {spec.name!r} has no option {', '.join(map(repr, unknown))} (it takes: {takes})")
    for name, value in options.items():  # a default of a plain type tells what the option takes
        default = known[name].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UserError(f"{spec.word} {spec.name!r}: {name} must be true or false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{spec.word} {spec.name!r}: {name} must be a number, got {value!r}")


def check_model(name: str, registry: Registry | None = None, **kwargs: Any) -> None:
    """Refuse an unknown model ``name``, or options its factories do not take or of the wrong type,
    without building anything (the values are checked when the model is built)."""
    _plan(name, registry or default_registry(), kwargs)


def create_model(name: str, registry: Registry | None = None, **kwargs: Any):
    """Build model ``name`` with architecture options ``kwargs`` (``None`` values are dropped).

    Wrapper options go in a dict under the wrapper's name: ``create_model("se-vgg16",
    se={"placement": "stage"})``. The model remembers how it was built in ``model.zoo_config``,
    which is what weights files store.
    """
    wrappers, arch, arch_factory, options, wrapper_options = _plan(name, registry or default_registry(), kwargs)

    def build_arch(**extra: Any):
        _refuse_twice(set(extra) & set(options), arch)
        try:
            return arch_factory(**options, **extra)
        except (TypeError, ValueError) as exc:
            raise UserError(f"cannot build {arch.name!r} with {options}: {exc}") from exc

    build: Callable[..., Any] = build_arch
    for wrapper in reversed(wrappers):  # innermost first
        build = _bind(wrapper.load(), build, arch, wrapper_options[wrapper.name])
    model = build()
    model.zoo_config = {
        "model": name,
        "architecture": arch.qualified_name,
        "wrappers": [w.qualified_name for w in wrappers],
        "options": json.loads(json.dumps({**options, **{k: v for k, v in wrapper_options.items() if v}}, default=repr)),
    }
    return model


def _plan(name: str, registry: Registry, kwargs: dict[str, Any]):
    """The wrappers and architecture ``name`` stands for, its factory, and the options split between
    them, every option checked against the signature of the factory that takes it."""
    wrappers, arch = registry.resolve_model(name)
    options = {k: v for k, v in kwargs.items() if v is not None}
    wrapper_options = {w.name: options.pop(w.name, None) or {} for w in wrappers}
    for key, value in wrapper_options.items():
        if not isinstance(value, dict):
            raise UserError(f"options of wrapper {key!r} must be a dict, got {value!r}")
    arch_factory = arch.load()
    check_options(arch, arch_factory, {k: v for k, v in options.items() if k not in STANDARD_OPTIONS})
    for wrapper in wrappers:
        check_options(wrapper, wrapper.load(), wrapper_options[wrapper.name], skip=2)
    return wrappers, arch, arch_factory, options, wrapper_options


def _bind(factory: Callable[..., Any], inner: Callable[..., Any], arch: Architecture, opts: dict[str, Any]):
    def build(**outer: Any):
        def build_inner(**mine: Any):
            _refuse_twice(set(outer) & set(mine), arch)
            return inner(**outer, **mine)

        return factory(build_inner, arch, **opts)

    return build


def _refuse_twice(clash: set[str], arch: Architecture) -> None:
    if clash:
        raise UserError(f"wrappers set {', '.join(sorted(clash))} of {arch.name!r} twice; apply only one of them")
