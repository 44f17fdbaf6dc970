"""The shape of the source tree: what may import what, and how long a module may be.

Read from the source with ``ast``, nothing is imported.  The import graph has a node per
module under ``lab/`` and ``studies/`` (``lab/optim/base.py`` is ``lab.optim.base``, a
package is its ``__init__.py``) and an edge for every import statement, at module level
or inside a function, to the project module it names: ``from a.b import c`` points to
``a.b.c`` when that is a module and to ``a.b`` otherwise; relative imports are resolved
against the importing module's package.  Each check names the offending files.
"""
from __future__ import annotations

import ast
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lab", "studies")  # the project's importable trees
MAX_LINES = 500  # "files you can read in one sitting" (STYLE.md, habit 12)
STORE = ROOT / "lab" / "store.py"  # the one module that may touch a Store's connection


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` under the project packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def resolve(imported: str) -> str | None:
    """The project module a dotted name lands in (its longest prefix that is a module)."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return None


class Edge(NamedTuple):
    line: int  # an import of the target in the importing module, a module-level one if any
    deferred: bool  # every import of the target is inside a function (runs on call)


def import_statements(tree: ast.AST, deferred: bool = False):
    """``(node, deferred)`` for every import statement, in source order."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, deferred
        inside = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
        yield from import_statements(child, inside)


def imports_of(name: str, path: Path) -> dict[str, Edge]:
    """The project modules that module ``name`` (source ``path``) imports, itself excluded."""
    edges = {}
    for node, deferred in import_statements(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [resolve(alias.name) for alias in node.names]
        else:
            base = node.module
            if node.level:  # relative: level 1 is this module's package, 2 its parent, ...
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".")
            # `from x import y`: y may be a submodule of x
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else resolve(base)
                       for alias in node.names]
        for target in targets:
            if target is None or target == name:
                continue
            if target not in edges or (edges[target].deferred and not deferred):
                edges[target] = Edge(node.lineno, deferred)
    return edges


def import_graph() -> dict[str, dict[str, Edge]]:
    """Module -> {imported project module: how it is imported}."""
    return {name: imports_of(name, path) for name, path in MODULES.items()}


def tangles(graph: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan): within one,
    every module imports every other, directly or not."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One shortest cycle ``[a, b, ..., a]`` per tangle."""
    return [cycle_through(graph, component) for component in tangles(graph)]


def cycle_through(graph: Mapping[str, Iterable[str]], component: set[str]) -> list[str]:
    """A shortest cycle inside ``component`` through its first module (breadth first)."""
    start = min(component)
    parents, frontier = {start: None}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(set(graph[v]) & component):
                if w == start:  # closed: walk the parents back from v
                    path = [v]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if w not in parents:
                    parents[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{sorted(component)} is strongly connected, so a cycle exists")


def describe(graph: dict[str, dict[str, Edge]], cycle: list[str]) -> str:
    """``a -> b -> a`` with, for each step, the file and line of the import."""
    steps = []
    for a, b in zip(cycle, cycle[1:]):
        edge = graph[a][b]
        steps.append(f"{relative(MODULES[a])}:{edge.line} imports {b}"
                     + (" (inside a function)" if edge.deferred else ""))
    return " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


def test_graph_resolves_submodules_and_relative_imports(tmp_path):
    graph = import_graph()
    assert "lab.data" in graph["lab.train"]          # from lab import data: a submodule
    assert "lab.optim.base" in graph["lab.train"]    # from lab.optim.base import apply_updates
    assert "lab.optim" in graph["lab"]               # from lab.optim import apply_updates: a name
    assert "lab" not in graph["lab.train"]           # `from lab import data` is not an edge to lab
    source = tmp_path / "module.py"
    source.write_text("from . import data\nfrom ..optim import base, Optimizer\n"
                      "def f():\n    from .spec import Plan\n")
    assert imports_of("lab.sweep.module", source) == {
        "lab.sweep": Edge(1, False), "lab.optim.base": Edge(2, False), "lab.optim": Edge(2, False),
        "lab.sweep.spec": Edge(4, True)}
    package = tmp_path / "__init__.py"  # in a package's __init__, `.` is the package itself
    package.write_text("from .spec import Plan\nfrom . import engine\n")
    assert imports_of("lab.sweep", package) == {"lab.sweep.spec": Edge(1, False),
                                                "lab.sweep.engine": Edge(2, False)}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    found = [(component, cycle_through(graph, component)) for component in tangles(graph)]
    assert not found, ("import cycles between project modules (an import inside a function "
                       "defers the cycle, it does not remove it):\n" + "\n".join(
                           f"{describe(graph, cycle)}\n    (one of {len(component)} modules that "
                           f"import each other: {', '.join(sorted(component))})"
                           for component, cycle in found))


def test_library_never_imports_studies():
    offenders = sorted(
        f"{relative(MODULES[name])}:{edge.line} imports {target}"
        for name, edges in import_graph().items() if name.split(".")[0] == "lab"
        for target, edge in edges.items() if target.split(".")[0] == "studies")
    assert not offenders, "lab/ must not import its scripts in studies/:\n" + "\n".join(offenders)


def test_modules_fit_in_one_sitting():
    lengths = {relative(path): len(path.read_text().splitlines())
               for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    too_long = sorted(f"{file}: {n} lines" for file, n in lengths.items() if n > MAX_LINES)
    assert not too_long, f"modules over {MAX_LINES} lines:\n" + "\n".join(too_long)


def private_connection_uses(path: Path) -> list[int]:
    """Line numbers where ``path`` reads ``x._conn`` or ``getattr(x, "_conn")``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and node.attr == "_conn":
            lines.append(node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and node.args[1].value == "_conn"):
            lines.append(node.lineno)
    return sorted(lines)


def test_private_connection_uses_are_found(tmp_path):
    source = tmp_path / "module.py"
    source.write_text('store._conn.execute("SELECT 1")\nconn = getattr(store, "_conn")\n'
                      'text = "._conn in a string is not a use"\n')
    assert private_connection_uses(source) == [1, 2]


@pytest.mark.parametrize("tree", ["lab", "studies", "benchmarks"])
def test_only_the_store_touches_its_connection(tree):
    offenders = [f"{relative(path)}:{line}" for path in sorted((ROOT / tree).rglob("*.py"))
                 if path != STORE for line in private_connection_uses(path)]
    assert not offenders, ("a Store's private ._conn is used outside lab/store.py (use its "
                           "public methods):\n" + "\n".join(offenders))


def test_figure_functions_draw_one_figure_each():
    # a plot function of 100+ lines drew several figures at once; now one function per figure
    long = []
    for path in module_files().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and ("plot" in node.name or "figure" in node.name):
                size = node.end_lineno - node.lineno + 1
                if size >= 100:
                    long.append(f"{relative(path)}:{node.lineno} {node.name}: {size} lines")
    assert not long, "plot functions of 100 lines or more:\n  " + "\n  ".join(long)
