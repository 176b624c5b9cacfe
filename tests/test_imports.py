"""Layers stay layers: the package's import graph (`core.import_graph`, read from the source with `ast`, function-local
imports included) has no cycle. A cycle is reported with the modules in it."""
from pathlib import Path

import pytest

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


def toy_package(root, modules: dict[str, str]) -> Path:
    "A package `abaw_workbench` under `root` with these modules (name -> source): what the checkers read."
    pkg = root / "abaw_workbench"; pkg.mkdir()
    for name, src in modules.items(): (pkg / f"{name}.py").write_text(src)
    return pkg


def test_the_checker_finds_a_cycle(tmp_path):
    pkg = toy_package(tmp_path, {"a": "from abaw_workbench.b import x\n", "b": "def f():\n    from .c import y\n",
                                 "c": "import abaw_workbench.a\n", "d": "from abaw_workbench import a\n"})
    assert cycles(import_graph(pkg)) == [["a", "b", "c"]]


def test_package_has_no_import_cycle():
    found = cycles(import_graph(PKG))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


CONTRACTS = ("core", "schema", "layout", "catalog", "annotations", "metrics")  # design.md's contract layer


def contract_breaches(graph: dict[str, set[str]]) -> list[str]:
    "`a -> b` for each contract module `a` that imports a module `b` outside the contract layer."
    return [f"{a} -> {b}" for a in CONTRACTS if a in graph for b in sorted(graph[a]) if b not in CONTRACTS]


def test_the_checker_finds_a_contract_importing_a_stage(tmp_path):
    pkg = toy_package(tmp_path, {"core": "", "schema": "from .core import x\n", "catalog": "def f():\n    from abaw_workbench import synth\n",
                                 "synth": "from .schema import y\n"})
    assert contract_breaches(import_graph(pkg)) == ["catalog -> synth"]


def test_contracts_import_only_contracts():
    "design.md: contracts import only contracts, function-local imports included (a data/stage/pipeline import breaks the layer)."
    found = contract_breaches(import_graph(PKG))
    assert not found, "contract modules importing data/stage/pipeline modules: " + ", ".join(found)


def _top_level_names(source: str) -> set[str]:
    "Names a module binds at top level by `def`, `class` or assignment; a `def` under `@patch` binds a method, not a name."
    import ast
    out = set()
    for n in ast.parse(source).body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            decos = [d.func if isinstance(d, ast.Call) else d for d in n.decorator_list]
            if not any(getattr(d, "id", getattr(d, "attr", "")) in ("patch", "patch_to") for d in decos): out.add(n.name)
        elif isinstance(n, (ast.Assign, ast.AnnAssign)):
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                out |= {e.id for e in ast.walk(t) if isinstance(e, ast.Name)}
    return out


def all_problems(name: str) -> list[str]:
    "What is wrong with module `name`'s `__all__`: names it does not define at top level, or that are methods or imports."
    import importlib, inspect
    mod = importlib.import_module(f"abaw_workbench.{name}")
    defined = _top_level_names((PKG / f"{name}.py").read_text(encoding="utf-8"))
    out = []
    for a in getattr(mod, "__all__", []):
        if a not in defined: out.append(f"{name}.{a}: not defined at module level (a @patch method or an import?)"); continue
        o = getattr(mod, a, None)
        if (inspect.isfunction(o) or inspect.isclass(o)) and (o.__module__ != mod.__name__ or "." in o.__qualname__):
            out.append(f"{name}.{a}: is {o.__module__}.{o.__qualname__}, not a module-level definition of {name}")
        elif inspect.isfunction(o) and (owner := next((c for c in vars(mod).values() if inspect.isclass(c)
                                                      and any(v is o for v in vars(c).values())), None)):
            out.append(f"{name}.{a}: a method of {owner.__name__} attached by assignment (use fastcore's @patch)")
    return out


def test_top_level_names_leave_out_patched_methods():
    src = "from fastcore.basics import patch\nclass A: pass\n@patch\ndef step(self:A): pass\nX = 1\ndef f(): pass\n"
    assert _top_level_names(src) == {"A", "X", "f"}


def test_all_holds_only_module_level_definitions():
    mods = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in ("__init__", "_modidx"))
    found = [p for m in mods for p in all_problems(m)]
    assert not found, "unclean __all__:\n" + "\n".join(found)
