"""The one way zoo calls a plugin's code: options checked against the factory's own signature first
(those read from files more strictly), prints kept off stdout, and whatever the code raises turned
into one line that names the plugin and the item."""
from __future__ import annotations

import contextlib
import inspect
import math
import sys
import typing
from typing import Any, Callable, Iterator, Mapping

from ..base.errors import PluginError, UserError, first_line
from .catalog import GivenObject, Registry
from .specs import Spec

_CORE = __name__.partition(".")[0]  # zoo's own package

# Options every architecture factory accepts; callers may always pass them.
STANDARD_OPTIONS = ("num_classes", "in_chans", "input_size")


def call_factory(spec: Spec, *args: Any, **options: Any) -> Any:
    """``spec``'s factory called with ``args`` and its ``options``, checked first, inside :func:`plugin_code`."""
    factory = spec.load()
    check_options(spec, factory, options, skip=len(args))
    with plugin_code(spec):
        return factory(*args, **options)


@contextlib.contextmanager
def plugin_code(spec: Spec | None, what: str = "its factory raised", building: bool = True,
                among: tuple[Spec, ...] = ()) -> Iterator[None]:
    """Around every call into a plugin's code. While ``building``, its prints go to stderr (stdout holds
    answers: --json) and a TypeError or ValueError is the user's option (model files raise ValueError,
    as torchvision's do); anything else it raises is the plugin's, and becomes one :class:`PluginError`
    line naming the plugin and the item. zoo's own errors and running out of memory pass as they are.

    Code that runs several plugins' code at once (a training step: the model's, the trainer's, the
    optimizer's) names the one of ``spec`` and ``among`` whose code raised, by the traceback; else
    ``spec``, and where that is None (a model given as an object) the error passes as it is."""
    try:
        if building:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        else:
            yield
    except (UserError, PluginError, MemoryError):
        raise
    except Exception as exc:
        torch = sys.modules.get("torch")  # a GPU out of memory is the batch's size, not a plugin's bug
        if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):  # torch.OutOfMemoryError from 2.5
            raise
        blamed = _whose(exc, spec, among) if among else spec
        if blamed is None:
            raise
        if building and isinstance(exc, (TypeError, ValueError)):
            raise UserError(f"{blamed.word} {blamed.name!r}: {first_line(exc)}") from exc
        raise blamed.failure(what, exc) from exc  # a bug in the plugin: name it, in one line


def _whose(exc: BaseException, spec: Spec | None, among: tuple[Spec, ...]) -> Spec | None:
    """The item whose package holds the innermost frame of ``exc``'s traceback, else ``spec``. zoo's own
    items (the core's) are never named: a frame in zoo is zoo's code."""
    packages = {item.package: item for item in reversed((spec, *among)) if item and item.package != _CORE}
    found, frame = None, exc.__traceback__
    while frame is not None:
        found = packages.get(frame.tb_frame.f_globals.get("__name__", "").partition(".")[0], found)
        frame = frame.tb_next
    return found or (spec if spec is not None and spec.package != _CORE else None)


def guarded(spec: Spec, function: Callable[..., Any], what: str) -> Callable[..., Any]:
    """``function`` (a plugin's object, called while training) with what it raises named as ``spec``'s."""
    def call(*args: Any, **kwargs: Any) -> Any:
        with plugin_code(spec, what, building=False):
            return function(*args, **kwargs)

    return call


def check_options(spec: Spec, factory: Callable[..., Any], options: dict[str, Any], skip: int = 0) -> None:
    """Refuse options the factory does not take, naming the ones it does, and infinite numbers."""
    for name, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{spec.word} {spec.name!r}: {name} must be a finite number, got {value!r}")
    params = parameters(factory)[skip:]
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


def parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
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
        if bound or name.startswith("attn_") or reads_or_fetches(spec, declared, name):
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


def reads_or_fetches(spec: Spec, declared: Mapping[str, Any], name: str) -> bool:
    """Whether option ``name`` may make the factory fetch or read a file: one its plugin marks unsafe,
    ``pretrained`` (create_model's own, whatever a factory declares), or one a ``**kwargs`` factory
    forwards unless its plugin lists it as safe."""
    return name in spec.unsafe_options or name == "pretrained" or (name not in declared and
                                                                   name not in spec.safe_kwargs)


def check_config_file_options(model: str, options: dict[str, Any], registry: Registry, source: str) -> None:
    """A config file may set any option the CLI could, with any value, but none that fetches or reads
    a file (:func:`reads_or_fetches`): timm's ``checkpoint_path``, ``pretrained_cfg_overlay``."""
    if GivenObject.named(model) is not None:
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
                         if reads_or_fetches(spec, dict.fromkeys(declared), name))
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
