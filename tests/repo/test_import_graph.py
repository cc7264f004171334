"""No import cycles between xlrepro's modules (CONTRIBUTING.md, "Layers").

The graph is read from the source (the AST of every module under xlrepro/), with every import:
module level, inside functions (lazy imports), and under ``if TYPE_CHECKING``. A cycle is
reported with each edge's file and line, so it can be broken where it closes."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "xlrepro"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> source file (a package is its ``__init__.py``)."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, mods: dict) -> str | None:
    """The module ``name`` refers to: itself, or its nearest enclosing module (``pkg.mod.attr``)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(mods: dict[str, Path]) -> dict[str, dict[str, list[int]]]:
    """importer -> {imported module: [line, ...]} for every import of an xlrepro module."""
    graph: dict[str, dict[str, list[int]]] = {m: {} for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the package that holds this module
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    parent = ".".join(base + ([node.module] if node.module else []))
                else:
                    parent = node.module or ""
                # `from pkg import name` imports the submodule pkg.name when there is one
                targets = [f"{parent}.{a.name}" if f"{parent}.{a.name}" in mods else parent for a in node.names]
                if parent == PACKAGE and all(a.name == "_C" for a in node.names):
                    targets = []  # the compiled extension: no Python source, no imports
            for t in targets:
                if t == PACKAGE or t.startswith(PACKAGE + "."):
                    target = _resolve(t, mods)
                    if target is not None and target != mod:
                        graph[mod].setdefault(target, []).append(node.lineno)
    return graph


def private_crossings(mods: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(importer, imported name, line) for every import of a private name (a segment starting with
    ``_``, dunders aside) from outside the package or module that holds it: ``xlrepro.ops._dispatch``
    may be imported inside ``xlrepro.ops`` only, ``xlrepro.x._helper`` inside ``xlrepro.x`` only."""
    out = []
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    parent = ".".join(base + ([node.module] if node.module else []))
                else:
                    parent = node.module or ""
                names = [f"{parent}.{a.name}" for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] != PACKAGE:
                    continue
                for i, part in enumerate(parts):
                    if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
                        owner = ".".join(parts[:i])
                        if mod != owner and not mod.startswith(owner + "."):
                            out.append((mod, name, node.lineno))
                        break
    return sorted(out)


def cycles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # recursive: chains are as deep as the package's layers, not its size
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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def shortest_cycle(graph: dict[str, dict[str, list[int]]], comp: list[str]) -> list[str]:
    """One shortest cycle through the component's first module (breadth-first), as a module path."""
    members = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return path[::-1] + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def describe(graph: dict, comp: list[str], mods: dict[str, Path], root: Path = ROOT) -> str:
    path = shortest_cycle(graph, comp)
    hops = [
        f"    {a} -> {b}  ({mods[a].relative_to(root)}:{', '.join(map(str, sorted(set(graph[a][b]))))})"
        for a, b in zip(path, path[1:])
    ]
    return f"  {len(comp)} modules: {', '.join(comp)}\n  e.g.\n" + "\n".join(hops)


def test_graph_reader_sees_lazy_relative_and_package_imports(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from xlrepro import b\n")  # lazy, inside a function
    (pkg / "b.py").write_text("from xlrepro.sub.c import thing\n")  # a name from a module
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import a\nfrom xlrepro import _C\n")  # relative; the extension
    mods = modules(tmp_path)
    graph = imports(mods)
    assert graph["xlrepro.a"] == {"xlrepro.b": [2]}
    assert graph["xlrepro.b"] == {"xlrepro.sub.c": [1]}
    assert graph["xlrepro.sub.c"] == {"xlrepro.a": [1]}
    (comp,) = cycles(graph)
    assert comp == ["xlrepro.a", "xlrepro.b", "xlrepro.sub.c"]
    text = describe(graph, comp, mods, tmp_path)
    assert "xlrepro.a -> xlrepro.b  (xlrepro/a.py:2)" in text and "xlrepro.sub.c -> xlrepro.a" in text
    (pkg / "sub" / "c.py").write_text("X = 1\n")
    assert cycles(imports(modules(tmp_path))) == []


def test_private_names_are_caught_where_they_cross_a_package_boundary(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "ops").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "ops" / "__init__.py").write_text("from xlrepro.ops._dispatch import select\n")  # inside: fine
    (pkg / "ops" / "_dispatch.py").write_text("from . import _lib\nfrom xlrepro import _C\n")  # inside: fine
    (pkg / "ops" / "_lib.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from xlrepro.ops._dispatch import select\n")  # lazy, crossing
    (pkg / "b.py").write_text("from xlrepro.a import _helper\nfrom xlrepro.ops import select\n")
    assert private_crossings(modules(tmp_path)) == [
        ("xlrepro.a", "xlrepro.ops._dispatch.select", 2),
        ("xlrepro.b", "xlrepro.a._helper", 1),
    ]


def test_no_private_name_crosses_a_package_boundary():
    found = private_crossings(modules())
    assert not found, "private names imported from outside their package (export a public name):\n" + "\n".join(
        f"  {mod}: {name} (line {line})" for mod, name, line in found
    )


#: Cycles still tolerated, each with why and how it is to be broken; none now, and a new entry needs
#: a plan to break it. The test fails on any other cycle, on a cycle that grew, and on an entry here
#: that no longer exists (delete it then).
KNOWN: frozenset[frozenset[str]] = frozenset()


def test_no_import_cycles():
    mods = modules()
    graph = imports(mods)
    found = cycles(graph)
    new = [c for c in found if frozenset(c) not in KNOWN]
    assert not new, (
        "import cycles between xlrepro modules (break each where it closes: move the shared "
        "piece down a layer, see CONTRIBUTING.md):\n" + "\n".join(describe(graph, c, mods) for c in new)
    )
    gone = KNOWN - {frozenset(c) for c in found}
    assert not gone, f"these known cycles are gone or changed; update KNOWN: {[sorted(g) for g in gone]}"


def test_the_layers_contract_holds_with_no_import_exempt():
    """``.importlinter``'s layers (what ``nox -s lint`` checks), here too: kept, with no ignore_imports."""
    import configparser
    import os
    import subprocess
    import sys

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".importlinter", encoding="utf-8")
    assert "ignore_imports" not in cfg["importlinter:contract:layers"], "move the imported piece down instead"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--no-cache",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "1 kept, 0 broken" in run.stdout, run.stdout + run.stderr
