"""Building models by name: ``create_model("se-vgg16", num_classes=10)``."""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import sys
import typing
from typing import Any, Callable, Mapping

from .errors import PluginError, UserError
from .registry import GIVEN, Registry, default_registry, matches
from .specs import Architecture, Spec

# Options every architecture factory accepts; callers may always pass them.
STANDARD_OPTIONS = ("num_classes", "in_chans", "input_size")


def list_models(pattern: str | None = None, registry: Registry | None = None) -> list[str]:
    """Model names matching a shell-style ``pattern`` (``'*resnet*'``), naturally sorted."""
    names = (registry or default_registry()).model_names()
    return [n for n in names if matches(n, pattern)] if pattern else names


def check_options(spec: Spec, factory: Callable[..., Any], options: dict[str, Any], skip: int = 0) -> None:
    """Refuse options the factory does not take, naming the ones it does, and infinite numbers."""
    for name, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{spec.word} {spec.name!r}: {name} must be a finite number, got {value!r}")
    params = _parameters(factory)[skip:]
    if not params or any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        takes = ", ".join(sorted(k for k in known if not k.startswith("attn_"))) or "no options"
        raise UserError(f"{spec.word} {spec.name!r} has no option {', '.join(map(repr, unknown))} (it takes: {takes})")
    for name, value in options.items():  # a default of a plain type (or an optional one's annotation) tells
        kind = _plain_kind(known[name])
        if value is None and known[name].default is None:
            continue
        if kind == "bool" and not isinstance(value, bool):
            raise UserError(f"{spec.word} {spec.name!r}: {name} must be true or false, got {value!r}")
        if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{spec.word} {spec.name!r}: {name} must be a number, got {value!r}")


def _parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    """The factory's parameters, their annotations evaluated where they can be (a plugin module's
    ``from __future__ import annotations`` leaves them text)."""
    try:
        return list(inspect.signature(factory, eval_str=True).parameters.values())
    except (NameError, TypeError, SyntaxError, AttributeError):
        try:
            return list(inspect.signature(factory).parameters.values())
        except (TypeError, ValueError):
            return []
    except ValueError:
        return []


def _plain_kind(param: inspect.Parameter) -> str | None:
    """"bool" or "number" for a parameter whose default is one, or whose annotation says so under a
    default of None (``stream: bool | None = None``); else None: the factory checks the rest."""
    default = param.default
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, (int, float)):
        return "number"
    if default is not None:
        return None
    types = set(typing.get_args(param.annotation)) - {type(None)}
    if types == {bool}:
        return "bool"
    if types and types <= {int, float}:
        return "number"
    return None


# Bounds on what a file may set: no option of a real model is larger, and nothing read from a file
# may make zoo allocate or loop without bound before the weights are checked against it.
FILE_NUMBER_LIMIT = 1 << 20
FILE_TEXT_LIMIT = 4096
FILE_LIST_LIMIT = 1024


def check_file_options(spec: Spec, factory: Callable[..., Any], options: Any, skip: int = 0,
                       source: str = "the file") -> None:
    """Refuse options read from a file (weights, checkpoint) unless each is a name the factory declares
    in its signature (or the plugin lists in ``safe_kwargs``), not one the plugin marks unsafe (it
    fetches or reads files) nor an attention slot (wrappers fill those), with a plain value of the
    default's type: nothing from a file may download, read a path or run code."""
    if not isinstance(options, dict):
        raise UserError(f"{source}: options of {spec.word} {spec.name!r} must be a table, got {_short(options)}")
    try:
        params = list(inspect.signature(factory).parameters.values())[skip:]
    except (TypeError, ValueError):
        params = []
    declared = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for name, value in options.items():
        bound = name in spec.options and name not in STANDARD_OPTIONS  # decided by the model's name
        if bound or name.startswith("attn_") or _reads_or_fetches(spec, declared, name):
            raise UserError(f"{source} sets option {name!r} of {spec.word} {spec.name!r}, which a file may not set "
                            "(only options the plugin declares safe); refused")
        problem = _plain_problem(value)
        default = declared[name].default if name in declared else None
        if problem is None:
            if isinstance(default, bool) and not isinstance(value, bool):
                problem = "must be true or false"
            elif isinstance(default, (int, float)) and not isinstance(default, bool) and (
                    isinstance(value, bool) or not isinstance(value, (int, float))):
                problem = "must be a number"
            elif isinstance(default, str) and not isinstance(value, str):
                problem = "must be text"
        if problem:
            raise UserError(f"{source}: option {name} of {spec.word} {spec.name!r} {problem}, got {_short(value)}")


def _reads_or_fetches(spec: Spec, declared: Mapping[str, Any], name: str) -> bool:
    """Whether option ``name`` may make the factory fetch or read a file: one its plugin marks unsafe,
    ``pretrained`` (create_model's own, whatever a factory declares), or one a ``**kwargs`` factory
    forwards unless its plugin lists it as safe."""
    return name in spec.unsafe_options or name == "pretrained" or (name not in declared and
                                                                   name not in spec.safe_kwargs)


def check_config_file_options(model: str, options: dict[str, Any], registry: Registry, source: str) -> None:
    """A config file may set any option the CLI could, with any value, but none that fetches or reads
    a file (:func:`_reads_or_fetches`): timm's ``checkpoint_path``, ``pretrained_cfg_overlay``."""
    if model.startswith(GIVEN):
        return
    wrappers, arch = registry.resolve_model(model)
    arch_options = {k: v for k, v in options.items() if k not in {w.name for w in wrappers}}
    for spec, these, skip in [(w, options.get(w.name) or {}, 2) for w in wrappers] + [(arch, arch_options, 0)]:
        try:
            params = list(inspect.signature(spec.load()).parameters.values())[skip:]
        except (TypeError, ValueError):
            params = []
        declared = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        refused = sorted(name for name in (these if isinstance(these, dict) else {})
                         if _reads_or_fetches(spec, dict.fromkeys(declared), name))
        if refused:
            raise UserError(f"{source} sets option {refused[0]!r} of {spec.word} {spec.name!r}, which a file may not "
                            "set (it fetches or reads files); refused")


def _plain_problem(value: Any, nested: bool = False) -> str | None:
    """Why ``value`` is not a plain option value (a bounded number, text, or a flat list of them)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        ok = math.isfinite(value) and abs(value) <= FILE_NUMBER_LIMIT
        return None if ok else f"must be a finite number within +-{FILE_NUMBER_LIMIT}"
    if isinstance(value, str):
        return None if len(value) <= FILE_TEXT_LIMIT else f"is longer than {FILE_TEXT_LIMIT} characters"
    if isinstance(value, list) and not nested:
        if len(value) > FILE_LIST_LIMIT:
            return f"is a list longer than {FILE_LIST_LIMIT}"
        return next((p for p in (_plain_problem(v, True) for v in value) if p), None)
    return "must be a number, text, true/false or a flat list of them"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_model(name: str, registry: Registry | None = None, **kwargs: Any) -> None:
    """Refuse an unknown model ``name``, or options its factories do not take or of the wrong type,
    without building anything (the values are checked when the model is built)."""
    _plan(name, registry or default_registry(), kwargs)


def create_model(name: str, registry: Registry | None = None, pretrained: bool | str | None = None, **kwargs: Any):
    """Build model ``name`` with architecture options ``kwargs`` (``None`` values are dropped).

    ``pretrained`` starts it from trained weights: True for the model's default ones, a tag
    (``"tv2_in1k"``, ``"resnet50.tv2_in1k"``) or a zoo weights file (``"run.safetensors"``); a classifier
    for another class count starts new. ``model.zoo_pretrained`` then says what was loaded and changed.

    Wrapper options go in a dict under the wrapper's name: ``create_model("se-vgg16",
    se={"placement": "stage"})``. The model remembers how it was built in ``model.zoo_config``,
    which is what weights files store.
    """
    registry = registry or default_registry()
    wrappers, arch, arch_factory, options, wrapper_options = _plan(name, registry, kwargs)

    def build_arch(**extra: Any):
        _refuse_twice(set(extra) & set(options), arch)
        try:
            return arch_factory(**options, **extra)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{arch.name}: {exc}") from exc  # model files raise ValueError, as torchvision's
        except (UserError, PluginError, MemoryError):
            raise
        except Exception as exc:  # a bug in the plugin: name it, in one line
            raise arch.failure("its factory raised", exc) from exc

    build: Callable[..., Any] = build_arch
    for wrapper in reversed(wrappers):  # innermost first
        build = _bind(wrapper.load(), build, arch, wrapper_options[wrapper.name])
    with contextlib.redirect_stdout(sys.stderr):  # stdout holds answers (--json); a plugin's prints are not
        model = build()
    model.zoo_config = {
        "model": name,
        "architecture": arch.qualified_name,
        "wrappers": [w.qualified_name for w in wrappers],
        "plugins": {p: getattr(registry.plugins.get(p), "version", "")
                    for p in sorted({arch.plugin, *(w.plugin for w in wrappers)})},
        "options": json.loads(json.dumps({**options, **{k: v for k, v in wrapper_options.items() if v}}, default=repr)),
    }
    if pretrained not in (None, False):
        from .pretrained import start_from

        model.zoo_pretrained = start_from(model, name, pretrained, registry, build_base=build_arch)
    return model


def model_from_metadata(document: dict[str, Any], path: Any, registry: Registry | None = None) -> Callable[[], Any]:
    """A function building the model a weights file's (checked) metadata describes, after every option
    passed :func:`check_file_options`. A missing plugin is named, as the metadata records it."""
    registry = registry or default_registry()
    if document["model"].startswith(GIVEN):
        raise UserError(f"{path} holds the weights of a model given to zoo.train as a module "
                        f"({document['model'][len(GIVEN):]}): build it yourself and load them with "
                        f"model.load_state_dict(safetensors.torch.load_file(...))")
    try:
        wrappers, arch = registry.resolve_model(document["model"])
    except UserError as error:
        recorded = [document.get("architecture", ""), *document.get("wrappers", [])]
        missing = sorted({name.partition(":")[0] for name in recorded if ":" in name} - set(registry.plugins))
        if missing:
            raise UserError(f"{path} was made with plugin {', '.join(map(repr, missing))}, which is not installed "
                            f"here (model {document['model']!r}); install it to use these weights") from error
        raise
    options = dict(document.get("options", {}))
    source = f"{path}"
    for wrapper in wrappers:
        check_file_options(wrapper, wrapper.load(), options.get(wrapper.name, {}), skip=2, source=source)
    arch_options = {k: v for k, v in options.items() if k not in {w.name for w in wrappers}}
    check_file_options(arch, arch.load(), arch_options, source=source)
    return lambda: create_model(document["model"], registry=registry, **options)


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
