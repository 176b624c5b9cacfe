"""Layers stay layers: the package's import graph (`core.import_graph`, read from the source with `ast`, function-local
imports included) has no cycle. A cycle is reported with the modules in it."""
from pathlib import Path

from abaw_workbench.core import import_graph

PKG = Path(__file__).resolve().parent.parent / "abaw_workbench"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    "Strongly connected components with more than one module (Tarjan)."
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
        for w in sorted(graph[v]):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in sorted(graph):
        if v not in index: visit(v)
    return out


def test_the_checker_finds_a_cycle(tmp_path):
    pkg = tmp_path / "abaw_workbench"; pkg.mkdir()
    (pkg / "a.py").write_text("from abaw_workbench.b import x\n")
    (pkg / "b.py").write_text("def f():\n    from .c import y\n")
    (pkg / "c.py").write_text("import abaw_workbench.a\n")
    (pkg / "d.py").write_text("from abaw_workbench import a\n")
    assert cycles(import_graph(pkg)) == [["a", "b", "c"]]


def test_package_has_no_import_cycle():
    found = cycles(import_graph(PKG))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)
