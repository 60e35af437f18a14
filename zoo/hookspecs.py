"""The hooks a plugin may implement: one per kind of spec (``zoo.specs.KINDS``), each returning an
iterable of specs of that kind.

A plugin is any module registered under the ``zoo.plugins`` entry-point group that defines some of
these functions, decorated with :data:`zoo.hookimpl`.
"""
from __future__ import annotations

import pluggy

from .specs import KINDS

PROJECT = "zoo"
ENTRY_POINT_GROUP = "zoo.plugins"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


def _hookspec(spec_type):
    def hook():
        pass

    hook.__name__ = hook.__qualname__ = spec_type.hook
    hook.__doc__ = f"{spec_type.hook_doc} Returns {spec_type.__name__} specs."
    return hookspec(hook)


for _spec_type in KINDS.values():
    globals()[_spec_type.hook] = _hookspec(_spec_type)

# The hook that returns each kind of spec.
HOOK_OF_KIND = {kind: spec_type.hook for kind, spec_type in KINDS.items()}
