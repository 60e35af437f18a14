"""zoo/ reads as a stack of layers: each imports only from those below it, with no cycle, no private
name taken across modules, and no function over 50 lines. Parsed from the source, every import
counted, function-local ones too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "zoo"
# Lowest first. models and data are siblings: neither imports the other.
LAYERS = [("zoo.base",), ("zoo.registry",), ("zoo.models", "zoo.data"), ("zoo.io",), ("zoo.training",),
          ("zoo.apps", "zoo.testing"), ("zoo.cli", "zoo", "zoo.__main__")]
MAX_FUNCTION_LINES = 50


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> tuple[int, str]:
    """The layer's index and the group (the subpackage) a module belongs to."""
    for index, groups in enumerate(LAYERS):
        for group in groups:
            if module == group or (group != "zoo" and module.startswith(group + ".")):
                return index, group
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """``(imported module, names taken from it, line)`` for every zoo import in ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "zoo"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "zoo":
                continue
            names = [a.name for a in node.names]
            submodules = [n for n in names if f"{target}.{n}" in MODULES]
            found += [(f"{target}.{n}", [], node.lineno) for n in submodules]
            rest = [n for n in names if n not in submodules]
            if rest:
                found.append((target, rest, node.lineno))
    return found


GRAPH = {module: imports(module) for module in MODULES}


def test_every_module_is_in_a_layer_and_imports_only_downward():
    upward = []
    for module, found in GRAPH.items():
        mine, my_group = layer_of(module)
        for target, _, line in found:
            theirs, their_group = layer_of(target)
            sibling = theirs == mine and their_group != my_group and mine < len(LAYERS) - 1
            if theirs > mine or sibling:
                upward.append(f"{MODULES[module].relative_to(ROOT.parent)}:{line} imports {target}")
    assert not upward, "imports that point up (or across siblings):\n" + "\n".join(upward)


def test_there_is_no_import_cycle():
    edges = {m: {t for t, _, _ in found if t in MODULES and t != m} for m, found in GRAPH.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_no_private_name_is_imported_across_modules():
    private = [f"{MODULES[m].relative_to(ROOT.parent)}:{line} takes {name} from {target}"
               for m, found in GRAPH.items() for target, names, line in found for name in names
               if name.startswith("_") and not name.startswith("__")]
    assert not private, "\n".join(private)


def test_no_function_is_over_50_lines():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} has {lines} lines")
    assert not long, "\n".join(long)


@pytest.mark.parametrize("kind", ["arch", "wrapper", "aug", "opt", "sched", "trainer", "data", "logger", "weights",
                                  "exporter"])
def test_each_kind_has_its_hook_written_out(kind):
    from zoo.registry.catalog import hooks
    from zoo.registry.specs import KINDS

    hook = getattr(hooks, KINDS[kind].hook)
    assert hook.__doc__ and hook.__module__ == hooks.__name__  # a function grep and IDEs find, not a generated one
    assert KINDS[kind].__name__ in str(hook.__annotations__["return"])
