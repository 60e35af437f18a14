"""Discovery of plugins through entry points, fault isolation, and name resolution."""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import math
import importlib.metadata as metadata
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping

import pluggy

from ..base.errors import PluginError, UserError
from ..base.version import __version__
from . import core, hooks
from .specs import KINDS, Architecture, Spec, Wrapper, split_qualified

DISTRIBUTION = "cnn-zoo"  # the package that ships zoo and its built-in plugins
CORE_PLUGIN = "zoo"  # the name under which the core registers what it provides itself
ENV_SELECT = "ZOO_PLUGINS"  # comma-separated plugin names: load only these
ENV_DISABLE = "ZOO_DISABLE_PLUGINS"  # comma-separated plugin names: never import these
ENV_STRICT = "ZOO_STRICT_PLUGINS"  # "1": a plugin error raises instead of being reported

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+/-]*$")


@dataclass(frozen=True)
class GivenObject:
    """A model or dataset given to zoo.train as a Python object where a name would be. Runs and weights
    record it as ``python:<what>`` (``python:pkg.Net``): a name zoo can show but never build."""

    what: str
    PREFIX: ClassVar[str] = "python:"

    def __str__(self) -> str:
        return f"{self.PREFIX}{self.what}"

    @classmethod
    def named(cls, name: Any) -> "GivenObject | None":
        """The object a recorded name stands for, or None for the name of something registered."""
        return cls(name[len(cls.PREFIX):]) if isinstance(name, str) and name.startswith(cls.PREFIX) else None


@dataclass
class PluginInfo:
    """What ``zoo plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str = ""
    version: str = ""
    status: str = "ok"  # ok | error | disabled
    provides: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    load_seconds: float = 0.0  # its import and hook registration: what it adds to every zoo command


def natural_key(name: str) -> list[Any]:
    """Sort vgg11 before vgg13 before vgg16 and resnet50 before resnet101."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _csv_env(env: Mapping[str, str], key: str) -> set[str] | None:
    value = env.get(key)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


class Registry:
    """Everything the loaded plugins provide, by kind.

    Build one with :meth:`discover` (entry points), or for tests with :func:`zoo.testing.fresh_registry`
    (chosen modules and installed plugins). Lookups accept a bare ``name`` or a qualified ``plugin:name``.
    """

    def __init__(self, strict: bool = False, on_error: Callable[[str], None] | None = None):
        self.strict = strict
        self.on_error = on_error
        self.plugins: dict[str, PluginInfo] = {}
        self._items: dict[str, list[Spec]] = {kind: [] for kind in KINDS}
        self._pm = pluggy.PluginManager(hooks.PROJECT)
        self._pm.add_hookspecs(hooks)

        self.load_plugin(PluginInfo(CORE_PLUGIN, core.__name__, DISTRIBUTION, __version__), lambda: core)

    # ----------------------------------------------------------------- loading
    @classmethod
    def discover(
        cls,
        path: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> "Registry":
        """Load every plugin registered under the ``zoo.plugins`` entry-point group on ``path``."""
        env = os.environ if env is None else env
        plugin_seconds()  # a bad $ZOO_PLUGIN_TIMEOUT is one error, not one per plugin
        registry = cls(strict=env.get(ENV_STRICT, "") not in ("", "0"), on_error=on_error)
        selected, disabled = _csv_env(env, ENV_SELECT), _csv_env(env, ENV_DISABLE) or set()
        seen_dists: set[str] = set()
        # zoo's own plugins first: an outside entry point with a built-in plugin's name is then the one
        # refused, whatever order the path lists them in.
        found = sorted(metadata.distributions(path=sys.path if path is None else path),
                       key=lambda d: (d.metadata["Name"] or "").lower() != DISTRIBUTION)
        for dist in found:
            dist_name = dist.metadata["Name"] or "?"
            if dist_name.lower() in seen_dists:  # the same install found twice on the path
                continue
            seen_dists.add(dist_name.lower())
            for ep in dist.entry_points:
                if ep.group != hooks.ENTRY_POINT_GROUP:
                    continue
                info = PluginInfo(ep.name, ep.value, dist_name, dist.version or "")
                if ep.name in disabled or (selected is not None and ep.name not in selected):
                    info.status = "disabled"
                    registry.plugins.setdefault(ep.name, info)
                    continue
                registry.load_plugin(info, lambda ep=ep: ep.load())
        registry.collect()
        return registry

    def _fail(self, info: PluginInfo, message: str, exc: BaseException | None = None) -> None:
        info.status = "error"
        info.errors.append(message)
        if self.strict:
            raise PluginError(f"plugin {info.name!r}: {message}") from exc
        if self.on_error:
            self.on_error(f"plugin {info.name!r} ({info.distribution or info.module}): {message}")

    def load_plugin(self, info: PluginInfo, load: Callable[[], Any]) -> None:
        """Import one plugin with ``load()`` and register its hooks; failures are reported, not raised."""
        if info.name in self.plugins and self.plugins[info.name].status != "disabled":
            other = self.plugins[info.name]
            clash = PluginInfo(info.name, info.module, info.distribution, info.version)
            self.plugins[f"{info.name} ({info.distribution})"] = clash
            self._fail(clash, f"plugin name already used by {other.distribution or other.module}; not loaded")
            return
        self.plugins[info.name] = info
        started = time.perf_counter()
        try:
            plugin = _isolated(load, f"importing {info.module}")
            self._check_hook_names(plugin)
            self._pm.register(plugin, name=info.name)
        except (Exception, SystemExit) as exc:  # a broken plugin is reported, never fatal to the rest
            self._fail(info, f"failed to load: {type(exc).__name__}: {exc}", exc)
        finally:
            info.load_seconds = time.perf_counter() - started

    def _check_hook_names(self, plugin: object) -> None:
        # pluggy accepts a misspelt hook, or a hook without @hookimpl, silently; say so instead.
        known = list(hooks.HOOK_OF_KIND.values())
        unknown = []
        for attr in dir(plugin):
            opts = self._pm.parse_hookimpl_opts(plugin, attr)
            if opts is not None and attr not in known:
                near = difflib.get_close_matches(attr, known, n=1)
                unknown.append(f"{attr!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
            if opts is None and attr in known and callable(getattr(plugin, attr, None)):
                raise PluginError(f"{attr}() is not decorated with @zoo.hookimpl, so zoo would never call it")
        if unknown:
            raise PluginError(f"unknown hook{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                              f"the hooks are {', '.join(known)}")

    def collect(self) -> None:
        """Call every plugin's hooks one by one, so one failure cannot abort the others."""
        for kind, hook_name in hooks.HOOK_OF_KIND.items():
            spec_type = KINDS[kind]
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                info = self.plugins[impl.plugin_name]
                try:
                    specs = _isolated(lambda: list(impl.function()), f"{hook_name}()")
                except (Exception, SystemExit) as exc:
                    self._fail(info, f"hook {hook_name}() raised {type(exc).__name__}: {exc}", exc)
                    continue
                for spec in specs:
                    problem = _invalid(spec, spec_type)
                    if problem:
                        self._fail(info, f"hook {hook_name}() returned {problem}")
                        continue
                    spec = dataclasses.replace(spec, plugin=info.name)
                    self._items[kind].append(spec)
                    info.provides.setdefault(kind, []).append(spec.name)

    # ----------------------------------------------------------------- lookup
    def items(self, kind: str) -> list[Spec]:
        return sorted(self._items[kind], key=lambda s: (natural_key(s.name), s.plugin))

    def missing(self, plugins: Iterable[str]) -> list[str]:
        """Those of ``plugins`` not loaded here: not installed, disabled, or broken."""
        return sorted(name for name in plugins if getattr(self.plugins.get(name), "status", None) != "ok")

    def built_in(self, spec: Spec) -> bool:
        """Whether zoo itself ships ``spec``'s plugin."""
        info = self.plugins.get(spec.plugin)
        return info is not None and info.distribution.lower() == DISTRIBUTION

    def find(self, kind: str, name: str) -> Spec | None:
        """The spec called ``name`` (or ``plugin:name``), None if none. A bare name that a built-in
        plugin offers is the built-in's, whatever else is installed: installing a plugin never changes
        what a working command does. Between other plugins a bare name is ambiguous: an error."""
        plugin, bare = split_qualified(name)
        matches = sorted((s for s in self._items[kind] if s.name == bare and (not plugin or s.plugin == plugin)),
                         key=lambda s: s.plugin)
        built_in = [s for s in matches if self.built_in(s)]
        if len(matches) > 1 and len(built_in) == 1:
            return built_in[0]
        if len(matches) > 1:
            providers = " and ".join(f"{s.plugin!r}" for s in matches)
            choices = " or ".join(s.qualified_name for s in matches)
            raise UserError(f"{KINDS[kind].word} {bare!r} is provided by plugins {providers}: use {choices}")
        return matches[0] if matches else None

    def get(self, kind: str, name: str) -> Spec:
        spec = self.find(kind, name)
        if spec is None:
            names = [s.name for s in self._items[kind]]
            raise UserError(_unknown(KINDS[kind].word, name, names, f"zoo list --kind {kind}"))
        return spec

    def resolve_model(self, name: str) -> tuple[list[Wrapper], Architecture]:
        """Split ``se-vgg16`` into wrappers ``[se]`` and architecture ``vgg16`` (outermost first)."""
        wrappers: list[Wrapper] = []
        rest = name
        while True:
            arch = self.find("arch", rest)
            if arch is not None:
                return wrappers, arch  # type: ignore[return-value]
            head, sep, tail = rest.partition("-")
            wrapper = self.find("wrapper", head) if sep else None
            if wrapper is None:
                prefix = name[: len(name) - len(rest)]
                candidates = [prefix + n for n in self.model_names(include_composed=not prefix)]
                raise UserError(_unknown("model", name, candidates, "zoo list"))
            if any(w.qualified_name == wrapper.qualified_name for w in wrappers):
                raise UserError(f"wrapper {wrapper.name!r} is applied twice in {name!r}")
            wrappers.append(wrapper)  # type: ignore[arg-type]
            rest = tail

    def flagged(self, kind: str, flag: str) -> Spec:
        """The item whose spec declares the command-line ``flag`` (``--amp``), qualified; one clear error
        if no installed plugin declares it or several do."""
        return self._declared(kind, lambda s: getattr(s, "flag", "") == flag,
                              f"--{flag} picks the {KINDS[kind].word} that declares it")

    def default_of(self, kind: str) -> Spec:
        """The item of ``kind`` a run uses when it names none: the one whose spec declares ``default``.
        The core names no plugin's item; zoo's built-in plugins declare the defaults."""
        return self._declared(kind, lambda s: s.default,
                              f"a run that names no {KINDS[kind].word} uses the one a plugin declares default")

    def _declared(self, kind: str, declares: Callable[[Spec], bool], rule: str) -> Spec:
        found = [s for s in self._items[kind] if declares(s)]
        if len(found) != 1:
            who = " and ".join(s.qualified_name for s in found) or "no installed plugin"
            raise UserError(f"{rule}, and {who} {'does' if len(found) < 2 else 'do'}; name one")
        return found[0]

    def model_names(self, include_composed: bool = True) -> list[str]:
        """Architecture names, plus ``wrapper-arch`` for every architecture: what ``create_model``
        accepts (a wrapper uses an architecture's attention slot, or surgery after its convolutions)."""
        archs = self.items("arch")
        names = [a.name for a in archs]
        if include_composed:
            names += [f"{w.name}-{a.name}" for w in self.items("wrapper") for a in archs]
        return sorted(set(names), key=natural_key)

    def select(self, kind: str | None = None, pattern: str | None = None) -> list[Spec]:
        """Items of ``kind`` (every kind when None) whose name or qualified name matches ``pattern``."""
        kinds = [kind] if kind else list(KINDS)
        found = [s for k in kinds for s in self.items(k)]
        if pattern:
            found = [s for s in found if matches(s.name, pattern) or matches(s.qualified_name, pattern)]
        return found


PLUGIN_TIMEOUT_ENV = "ZOO_PLUGIN_TIMEOUT"


def plugin_seconds() -> float:
    """How long each plugin import and hook call may take: ``$ZOO_PLUGIN_TIMEOUT`` seconds (20), at
    most a day."""
    text = os.environ.get(PLUGIN_TIMEOUT_ENV, "20")
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 86_400:
        raise UserError(f"${PLUGIN_TIMEOUT_ENV} must be a number of seconds in (0, 86400], got {text[:40]!r}")
    return seconds


def _isolated(function: Callable[[], Any], what: str) -> Any:
    """``function()`` with what it prints sent to stderr (stdout holds answers such as ``--json``),
    given :func:`plugin_seconds` to finish: a plugin that hangs is reported and left behind in a
    daemon thread, so that ``zoo list`` still answers."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as it is
            outcome["error"] = exc

    seconds = plugin_seconds()
    with contextlib.redirect_stdout(sys.stderr):
        worker = threading.Thread(target=call, daemon=True, name=f"zoo plugin: {what}")
        worker.start()
        worker.join(seconds)
    if worker.is_alive():
        raise PluginError(f"{what} did not finish within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def matches(name: str, pattern: str) -> bool:
    """Shell-style wildcards (``'*resnet*'``), case-insensitive, as timm's ``list_models``."""
    return fnmatch.fnmatchcase(name.lower(), pattern.lower())


def _unknown(word: str, name: str, candidates: Iterable[str], hint: str) -> str:
    given = GivenObject.named(name)
    if given is not None:
        return (f"{word} {given.what!r} was given to zoo.train as a Python object; zoo cannot build it from "
                f"a name: give the object again, from Python")
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    suggestion = f"; did you mean {', '.join(close)}?" if close else f"; see `{hint}`"
    return f"unknown {word} {name!r}{suggestion}"


def _invalid(spec: object, spec_type: type[Spec]) -> str | None:
    """Why ``spec`` cannot be registered as a ``spec_type``, or None if it can."""
    if not isinstance(spec, spec_type):
        return f"{type(spec).__name__} where a {spec_type.__name__} spec was expected"
    if not isinstance(spec.name, str) or not _NAME.match(spec.name):
        return f"an invalid name {spec.name!r} (letters, digits and _ . + / -; no ':')"
    if spec_type is Wrapper and "-" in spec.name:
        return f"a wrapper name with '-' ({spec.name!r}); '-' joins wrappers to architectures"
    if not (callable(spec.factory) or (isinstance(spec.factory, str) and ":" in spec.factory)):
        return f"{spec.name!r} with a factory that is neither callable nor 'module:attr'"
    writes = getattr(spec, "writes", ())  # what a run started over removes: names in the run folder, nothing else
    if not (isinstance(writes, tuple) and all(isinstance(n, str) and n not in ("", ".", "..") and "/" not in n
                                              and "\\" not in n for n in writes)):
        return f"{spec.name!r} whose writes are not a tuple of names in the run folder: {writes!r}"
    return None


_default: Registry | None = None


def _warn(message: str) -> None:
    print(f"zoo: warning: {message} (see `zoo plugins`)", file=sys.stderr)


def default_registry() -> Registry:
    """The registry of the installed plugins, discovered once per process."""
    global _default
    if _default is None:
        _default = Registry.discover(on_error=_warn)
    return _default
