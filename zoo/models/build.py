"""Building models by name, new: ``build_model("se-vgg16", num_classes=10)`` is the wrapper ``se`` applied
to the architecture ``vgg16``."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..base.errors import UserError
from ..registry.catalog import Registry, default_registry, matches
from ..registry.factories import STANDARD_OPTIONS, check_options, plugin_code
from ..registry.specs import Architecture, Spec


def list_models(pattern: str | Sequence[str] | None = None, registry: Registry | None = None, *,
                pretrained: bool = False, exclude_filters: str | Sequence[str] = ()) -> list[str]:
    """Model names matching a shell-style ``pattern`` (``'*resnet*'``) or any of a list of them, and none
    of ``exclude_filters``, naturally sorted: timm's call. ``pretrained`` lists the registered weights
    instead, by their full names (``resnet50.tv2_in1k``), as timm's ``list_models(pretrained=True)`` does."""
    registry = registry or default_registry()
    wanted, unwanted = _patterns(pattern, "pattern"), _patterns(exclude_filters, "exclude_filters")
    names = [s.name for s in registry.items("weights")] if pretrained else registry.model_names()
    return [n for n in names if (not wanted or any(matches(n, p) for p in wanted))
            and not any(matches(n, p) for p in unwanted)]


def _patterns(given: str | Sequence[str] | None, what: str) -> list[str]:
    if not given:
        return []
    patterns = [given] if isinstance(given, str) else list(given) if isinstance(given, (list, tuple)) else None
    if patterns is None or not all(isinstance(p, str) for p in patterns):
        raise UserError(f"list_models: {what} is a shell-style pattern or a list of them, got {given!r}")
    return patterns


def check_model(name: str, registry: Registry | None = None, **kwargs: Any) -> None:
    """Refuse an unknown model ``name``, or options its factories do not take or of the wrong type,
    without building anything (the values are checked when the model is built)."""
    plan_model(name, registry or default_registry(), kwargs)


def build_model(name: str, registry: Registry | None = None, **kwargs: Any):
    """Build model ``name`` with architecture options ``kwargs`` (``None`` values are dropped), new.

    Wrapper options go in a dict under the wrapper's name: ``build_model("se-vgg16",
    se={"placement": "stage"})``. The model remembers how it was built in ``model.zoo_config``,
    which is what weights files store.
    """
    return plan_model(name, registry or default_registry(), kwargs).build()[0]


@dataclass(frozen=True)
class ModelPlan:
    """A model name resolved into its wrappers and architecture, with the options of each checked
    against the signature of the factory that takes them: built as often as needed, resolved once."""

    name: str
    registry: Registry
    wrappers: list[Spec]
    arch: Architecture
    options: dict[str, Any]
    wrapper_options: dict[str, dict[str, Any]]

    def build(self) -> tuple[Any, Callable[..., Any]]:
        """The model, and a function that builds the architecture under its wrappers alone
        (pretrained weights of that architecture leave the wrappers' blocks new)."""
        arch, options, arch_factory = self.arch, self.options, self.arch.load()

        def build_arch(**extra: Any):
            _refuse_twice(set(extra) & set(options), arch)
            with plugin_code(arch):
                return arch_factory(**options, **extra)

        build: Callable[..., Any] = build_arch
        for wrapper in reversed(self.wrappers):  # innermost first
            build = _bind(wrapper, build, arch, self.wrapper_options[wrapper.name])
        model = build()
        model.zoo_config = {
            "model": self.name,
            "architecture": arch.qualified_name,
            "wrappers": [w.qualified_name for w in self.wrappers],
            "plugins": {p: getattr(self.registry.plugins.get(p), "version", "")
                        for p in sorted({arch.plugin, *(w.plugin for w in self.wrappers)})},
            "options": json.loads(json.dumps({**options, **{k: v for k, v in self.wrapper_options.items() if v}},
                                             default=repr)),
        }
        return model, build_arch


def plan_model(name: str, registry: Registry, kwargs: dict[str, Any],
               resolved: tuple[list[Spec], Architecture] | None = None) -> ModelPlan:
    """The plan of model ``name`` (``resolved``: its wrappers and architecture, already looked up)."""
    wrappers, arch = resolved or registry.resolve_model(name)
    options = {k: v for k, v in kwargs.items() if v is not None}
    wrapper_options = {w.name: options.pop(w.name, None) or {} for w in wrappers}
    for key, value in wrapper_options.items():
        if not isinstance(value, dict):
            raise UserError(f"options of wrapper {key!r} must be a dict, got {value!r}")
    check_options(arch, arch.load(), {k: v for k, v in options.items() if k not in STANDARD_OPTIONS})
    for wrapper in wrappers:
        check_options(wrapper, wrapper.load(), wrapper_options[wrapper.name], skip=2)
    return ModelPlan(name, registry, list(wrappers), arch, options, wrapper_options)


def _bind(wrapper: Spec, inner: Callable[..., Any], arch: Architecture, opts: dict[str, Any]):
    factory = wrapper.load()

    def build(**outer: Any):
        def build_inner(**mine: Any):
            _refuse_twice(set(outer) & set(mine), arch)
            return inner(**outer, **mine)

        with plugin_code(wrapper):  # the inner factory's errors are named by its own plugin_code
            return factory(build_inner, arch, **opts)

    return build


def _refuse_twice(clash: set[str], arch: Architecture) -> None:
    if clash:
        raise UserError(f"wrappers set {', '.join(sorted(clash))} of {arch.name!r} twice; apply only one of them")
