"""The layout's promises: no import cycles among vespid's modules (counting imports made
inside functions and for type checking too), and modules of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import vespid

ROOT = Path(vespid.__file__).parent
# Modules allowed past the size budget, each for one concern its docstring names.
MAX_LINES = 400
LONG_MODULES: dict[str, str] = {
    "vespid.tasks.runner": "a task program's life from GPU slot to finish (runner and task)",
    "vespid.worker.settings": "the table of worker settings, one field per environment variable",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The vespid modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = _imports(name, path, known)
    return graph


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_modules_stay_readable_in_size() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES and name not in LONG_MODULES}
    assert too_long == {}
    # An entry for a module that is no longer long is stale: the list says what is true.
    assert {name for name in LONG_MODULES if sizes.get(name, 0) <= MAX_LINES} == set()


# The layers of docs/architecture.md, top to bottom: a module imports only from its own
# layer's package or the layers below it, and components do not import each other.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"cli", "demo", "loadtest", "simulate", "compat"}),
    frozenset({"worker", "control", "client", "tasks"}),
    frozenset({"handlers", "benchmarks", "servers", "testing"}),
    frozenset({"protocol", "web", "guard", "errors", "settings", "runtime", "logs", "types", ""}),
)
# The one import across components: the worker starts the task server as its backend.
ACROSS_COMPONENTS = frozenset({("worker", "tasks")})


def _part(module: str) -> str:
    """The top-level part of vespid a module belongs to ('' for vespid itself)."""
    return module.split(".")[1] if "." in module else ""


def _layer(part: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def _module_layer(module: str) -> int:
    """A ``__main__`` module is a command (``python -m vespid.worker``), whatever its package."""
    return 0 if module.endswith(".__main__") else _layer(_part(module))


def test_imports_follow_the_layers() -> None:
    wrong = []
    for module, targets in _graph().items():
        here = _part(module)
        for target in targets:
            there = _part(target)
            if here == there or (here, there) in ACROSS_COMPONENTS:
                continue
            mine, theirs = _module_layer(module), _layer(there)
            if theirs < mine or (theirs == mine == 1):
                wrong.append(f"{module} -> {target}")
    assert wrong == []
