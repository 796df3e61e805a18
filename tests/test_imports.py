"""graphc's modules import each other without cycles, lazy (function-level) imports included.

Every `import` statement anywhere in a module counts, at any depth, except those under
``if TYPE_CHECKING:`` (never executed). Only graphc's own modules are nodes, so optional
third-party dependencies imported on first use (scipy, networkx, mpmath, ...) are not edges.
Importing ``a.b.c`` is an edge to ``a.b.c`` and to the packages ``a.b`` and ``a`` whose
``__init__`` it runs, except the importer's own ancestors (already being imported);
naming an ancestor itself (``import graphc``, ``from .. import name`` of a non-module)
is an edge to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import graphc

ROOT = Path(graphc.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = ("graphc", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(tree: ast.AST):
    """Import nodes, skipping `if TYPE_CHECKING:` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (i for n in node.orelse for i in _imports(n))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.name == "__init__.py" else m.rpartition(".")[0]
        ancestors = {".".join(m.split(".")[:k]) for k in range(1, m.count(".") + 1)}
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                named = [f"{base}.{a.name}" for a in node.names]
                targets = [t for t in named if t in mods]
                if len(targets) < len(named):  # some names are attributes of `base` itself
                    targets.append(base)
            else:
                targets = [a.name for a in node.names]
            for t in targets:
                if not t.startswith("graphc"):
                    continue
                while t not in mods:
                    t = t.rpartition(".")[0]
                parts = t.split(".")
                for k in range(1, len(parts) + 1):
                    name = ".".join(parts[:k])
                    if name != m and (name not in ancestors or k == len(parts)):
                        edges[m].add(name)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_graphc_has_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_finder_sees_lazy_and_ancestor_imports():
    edges = import_graph()
    assert "graphc.ops.registry" in edges["graphc.ir.graph"]
    assert "graphc.profiler.recording" in edges["graphc"]  # a lazy import in graphc.__getattr__
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
