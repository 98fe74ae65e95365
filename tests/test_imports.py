"""The package's imports form a tree: no module imports, directly or through others, a
module that imports it back.

The graph is read from the source with ``ast`` (nothing is imported): every ``import``
and ``from`` statement of avatar_cam/**/*.py, relative ones resolved, gives an edge from
its module to the avatar_cam module it names (``from . import x`` and ``from .pkg import
x`` name the submodule ``x`` when there is one). Each edge is marked where it sits: at
module level, inside a function (run on the call, the usual way around a cycle), or
under ``if TYPE_CHECKING:`` (read only by the type checker).

An import of a module's own ancestor package (``from .. import __version__``) is left
out: Python runs a package's ``__init__`` before any module in it anyway, so such an
edge adds no order that is not already there, and a package whose ``__init__`` gathers
names from its modules would otherwise always read as a cycle.

Asserted: the backends (runtime.py and the runtimes it opens) and calibrate (enrollment
training: train.py, batches.py, metatrain.py and what they share) have no cycle counting
every kind of edge, and the whole package has none among its module-level imports
(``TYPE_CHECKING`` ones included).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "avatar_cam"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # "module", "function" or "type-checking"
    line: int


Found = tuple[ast.Import | ast.ImportFrom, str]  # an import statement and its kind


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST, kind: str = "module") -> Iterator[Found]:
    """(statement, kind) for every import statement in ``node``."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, kind
        return
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        kind = "function"
    if isinstance(node, ast.If) and kind == "module" and _is_type_checking(node.test):
        for stmt in node.body:
            yield from _imports(stmt, "type-checking")
        for stmt in node.orelse:
            yield from _imports(stmt, kind)
        return
    for child in ast.iter_child_nodes(node):
        yield from _imports(child, kind)


def _known(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of dotted ``name`` that is a module of the package."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


@functools.cache
def edges() -> tuple[Edge, ...]:
    known = modules()
    out: list[Edge] = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        for node, kind in _imports(tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_known(a.name, known) for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    origin = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    origin = node.module or ""
                for a in node.names:
                    sub = f"{origin}.{a.name}"
                    targets.append(sub if sub in known else _known(origin, known))
            out += [Edge(name, t, kind, node.lineno) for t in dict.fromkeys(targets)
                    if t is not None and t != name and not name.startswith(t + ".")]
    return tuple(out)


def cycles(graph_edges: Sequence[Edge], among: set[str] | None = None) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in graph_edges:
        if among is None or (e.source in among and e.target in among):
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def _explain(groups: list[list[str]], graph_edges: Sequence[Edge]) -> str:
    lines = []
    for group in groups:
        members = set(group)
        lines.append(" <-> ".join(group))
        lines += [f"    {e.source}:{e.line} -> {e.target} ({e.kind})" for e in graph_edges
                  if e.source in members and e.target in members]
    return "\n".join(lines)


def test_graph_reads_relative_and_function_level_imports() -> None:
    # The reader must see the statements this test is about, or it proves nothing.
    found = {(e.source, e.target, e.kind) for e in edges()}
    assert ("avatar_cam.backends.runtime", "avatar_cam.backends.torch_backend",
            "function") in found  # `from .torch_backend import TorchBackend` in _open_one
    assert ("avatar_cam.backends.commands", "avatar_cam.backends.engines",
            "function") in found  # `from .engines import (...)`
    assert ("avatar_cam.calibrate.train", "avatar_cam.calibrate.batches",
            "module") in found
    assert ("avatar_cam.backends.cache", "avatar_cam.errors", "module") in found  # `..`
    assert ("avatar_cam.calibrate.batches", "avatar_cam.calibrate.dataset",
            "type-checking") in found


def test_cycles_are_found() -> None:
    made = [Edge("a", "b", "module", 1), Edge("b", "c", "function", 1),
            Edge("c", "a", "type-checking", 1), Edge("c", "d", "module", 1)]
    assert cycles(made) == [["a", "b", "c"]]
    assert cycles(made, among={"a", "b", "d"}) == []


def test_backends_have_no_import_cycle() -> None:
    every = edges()
    among = {m for m in modules() if m.startswith("avatar_cam.backends.")}
    groups = cycles(every, among)
    assert not groups, "import cycle:\n" + _explain(groups, every)


def test_calibrate_has_no_import_cycle() -> None:
    every = edges()
    among = {m for m in modules() if m.startswith("avatar_cam.calibrate.")}
    groups = cycles(every, among)
    assert not groups, "import cycle:\n" + _explain(groups, every)


def test_package_has_no_module_level_import_cycle() -> None:
    module_level = [e for e in edges() if e.kind != "function"]
    groups = cycles(module_level)
    assert not groups, "import cycle:\n" + _explain(groups, module_level)
