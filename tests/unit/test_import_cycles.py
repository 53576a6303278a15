"""No import loop anywhere in the project: grimp (the graph import-linter builds) walks the
imports of every module, at any depth in a function included, and a loop between two modules,
or between two top-level folders, fails with its chain named. import-linter's contracts
(pyproject.toml) keep the layers; this keeps the rest of the house free of loops."""

from __future__ import annotations

import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
# every first-party package (bench: the benchmarks' scripts, a namespace package)
PACKAGES = ("twolane", "twolane_cli", "local_stack", "model_build", "functions", "infra", "recommender",
            "bench")
# Loops left to a named follow-up, each a set of modules: a loop among exactly these passes.
# None left: the last (model_build.batch <-> model_build.cascade) went with the build's split.
ALLOWED: tuple[frozenset[str], ...] = ()


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(REPO))  # this checkout's packages, whatever the venv installed
    try:
        return grimp.build_graph(*PACKAGES, include_external_packages=False,
                                 exclude_type_checking_imports=True, cache_dir=None)
    finally:
        sys.path.remove(str(REPO))


def _loops(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of a directed graph with more than one node, each sorted
    (Tarjan's algorithm, iterative: no recursion limit on deep chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for nxt in targets:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    part = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        part.append(m)
                        if m == node:
                            break
                    if len(part) > 1:
                        found.append(sorted(part))
    return found


def _shown(graph: grimp.ImportGraph, part: list[str]) -> str:
    """One loop of a part as a chain `a -> b -> a` (a part may hold several)."""
    a = part[0]
    for b in sorted(graph.find_modules_directly_imported_by(a) & set(part)):
        back = graph.find_shortest_chain(importer=b, imported=a)
        if back:
            return " -> ".join((a, *back))
    return ", ".join(part)


def test_the_loop_finder_finds_loops() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"d"}}
    assert _loops(edges) == [["a", "b", "c"]]


def test_no_import_loop_between_modules(graph: grimp.ImportGraph) -> None:
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    loops = [p for p in _loops(edges) if frozenset(p) not in ALLOWED]
    assert not loops, "import loops:\n" + "\n".join(_shown(graph, p) for p in loops)


def test_no_import_loop_between_folders(graph: grimp.ImportGraph) -> None:
    """Between top-level packages, and between the folders (and modules) inside one, at every
    depth: an import that runs back up between folders is a loop here even when no two modules
    form one (`a.b.c` -> `a.d` -> `a.b.e` is a loop between `a.b` and `a.d`)."""
    depth = max(m.count(".") for m in graph.modules) + 1
    loops = []
    for d in range(1, depth):
        def unit(module: str, d: int = d) -> str:
            return ".".join(module.split(".")[:d])

        edges: dict[str, set[str]] = {}
        for m in graph.modules:
            for n in graph.find_modules_directly_imported_by(m):
                if unit(m) != unit(n) and not any({m, n} <= allowed for allowed in ALLOWED):
                    edges.setdefault(unit(m), set()).add(unit(n))
        loops += [p for p in _loops(edges) if p not in loops]
    assert not loops, f"folders that import each other: {loops}"


def test_allowed_loops_are_still_loops(graph: grimp.ImportGraph) -> None:
    """An allow-list entry whose loop is gone is removed from ALLOWED (so none outlives its fix)."""
    for allowed in ALLOWED:
        a, *rest = sorted(allowed)
        assert all(graph.find_shortest_chain(importer=a, imported=b) and
                   graph.find_shortest_chain(importer=b, imported=a) for b in rest), \
            f"{sorted(allowed)} no longer import each other: remove them from ALLOWED"
