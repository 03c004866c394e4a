"""The import graph of src/auditsink: no cycles, and no module importing a layer above its own.

Every import counts: module level, inside functions (the late imports that keep optional
dependencies optional) and under ``TYPE_CHECKING``, since each is a dependency of the design.
Importing a submodule is not counted as importing its parent package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "auditsink"

# Top to bottom (docs/architecture.md). A module may import its own layer and the ones below.
# The first part of a module's name below ``auditsink`` says its layer; "" is the package
# itself (``__version__``).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "cli"),
    ("service", "settings"),
    ("readlistener", "receive", "web", "notify", "forward", "rules", "detect", "doctor", "setup",
     "rbac"),
    ("pipeline", "query", "bus", "consumer", "printer"),
    ("store",),
    ("admit", "selector"),
    ("model", "priority", "timeutil", "logs", "runtime", "metrics", "textsafe", "asgi", ""),
)

# Known exceptions, each removed by the engineer working on that area (issue 15). The test fails
# when one is fixed, so that its entry goes too.
KNOWN_CYCLES: dict[frozenset[str], str] = {}
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module ``name`` lives in: ``auditsink.store.base.Store`` -> ``auditsink.store.base``."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            # `from pkg import sub` imports the submodule; `from mod import name` the module.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            owner = _owner(name) if name.split(".")[0] == "auditsink" else None
            if owner is not None and owner != module:
                yield owner


GRAPH = {module: set(_imports(module, path)) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _layer(module: str) -> int | None:
    part = module.split(".")[1] if "." in module else ""
    return next((i for i, names in enumerate(LAYERS) if part in names), None)


def test_the_walk_sees_the_imports() -> None:
    """Late and relative imports are found: the test can fail."""
    assert "auditsink.service" in GRAPH["auditsink.cli.serve"]
    assert "auditsink.rules.engine" in GRAPH["auditsink.service"]  # inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_no_import_cycles() -> None:
    cycles = _cycles(GRAPH)
    unknown = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert not unknown, f"import cycles: {unknown}"
    fixed = [sorted(c) for c in KNOWN_CYCLES if c not in cycles]
    assert not fixed, f"no longer a cycle, drop it from KNOWN_CYCLES: {fixed}"


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in GRAPH if _layer(m) is None)
    assert not unplaced, f"add these to LAYERS in tests/test_imports.py: {unplaced}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = {
        (module, dep) for module, deps in GRAPH.items() for dep in deps
        if (_layer(dep) or 0) < (_layer(module) or 0)
    }
    unknown = sorted(upward - set(KNOWN_UPWARD))
    assert not unknown, "imports of a layer above: " + ", ".join(f"{a} -> {b}" for a, b in unknown)
    fixed = sorted(set(KNOWN_UPWARD) - upward)
    assert not fixed, f"fixed, drop them from KNOWN_UPWARD: {fixed}"
