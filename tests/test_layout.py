"""Imports go one way: the package layers and no file-level import cycles.

Layers, bottom up (README, "Layout"): ``hooks`` imports nothing of ours (torch, transformers);
``geometry`` (numpy, scipy, torch) imports only ``hooks.plot_style`` for its figure; ``saes`` may import ``hooks`` and ``geometry``; ``steering`` may
import those and ``saes`` (protein steering trains and steers SAE latents; ``saes`` never
imports ``steering``); ``interp`` may import anything. Inside each package no two modules may import
each other, directly or round a longer loop. Every ``import`` statement counts, at module level
or inside a function (a lazy import is still an arrow), as do ``importlib.import_module`` calls
with a literal name. The source is parsed with :mod:`ast`; nothing is imported.
"""
from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hooks", "geometry", "saes", "steering", "interp")
ALLOWED = {
    "hooks": set(),
    "geometry": {"hooks"},  # figures only: hooks.plot_style (imported inside plot_profile)
    "saes": {"hooks", "geometry"},
    "steering": {"hooks", "geometry", "saes"},
    "interp": set(PACKAGES),
}

# TEMPORARY. File-level cycles (each as the set of modules on it) that other changes of issue #15
# undo; the lead removes each entry once its fix is merged. The test fails on any cycle not listed
# here and on an entry whose cycle is gone (or has changed: then list what is left, or fix it).
KNOWN_CYCLES: list = []  # sets of modules on a cycle someone is undoing; empty: every cycle fails the test


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict:
    """``{module name: path}`` of every .py file in our packages."""
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _target(name: str, known) -> str | None:
    """The longest prefix of ``name`` that is one of our modules (``None``: not ours)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known:
            return ".".join(parts[:n])
    return None


def imports_of(mod: str, path: Path, known) -> set:
    """Our modules that ``mod`` imports anywhere in its source."""
    is_pkg = path.name == "__init__.py"
    here = mod.split(".") if is_pkg else mod.split(".")[:-1]  # the package relative imports start from
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = here[: len(here) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import sub`` imports the module pkg.sub when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        for name in names:
            t = _target(name, known)
            if t is not None and t != mod:
                out.add(t)
    return out


@functools.lru_cache(maxsize=1)
def import_graph() -> dict:
    mods = modules()
    return {m: imports_of(m, p, mods) for m, p in mods.items()}


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def a_loop(graph: dict, comp: list) -> list:
    """One import loop through the first module of ``comp`` (for the failure message)."""
    members, start = set(comp), comp[0]
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & members):
            if w == start:
                return path + [start]
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return comp


def test_the_checks_can_fail(tmp_path):
    # a planted upward arrow, a planted 3-file loop, lazy and relative imports
    (tmp_path / "pkg").mkdir()
    files = {"pkg/__init__.py": "", "pkg/a.py": "from .b import x\n",
             "pkg/b.py": "def f():\n    from pkg import c\n", "pkg/c.py": "import importlib\nimportlib.import_module('pkg.a')\n",
             "pkg/d.py": "from . import a\nimport up.top\n", "up/__init__.py": "", "up/top.py": ""}
    for name, src in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(src)
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d", "up", "up.top"}
    g = {m: imports_of(m, tmp_path / (m.replace(".", "/") + ".py"), known) for m in ("pkg.a", "pkg.b", "pkg.c", "pkg.d")}
    assert g == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}, "pkg.d": {"pkg.a", "up.top"}}
    assert cycles(g) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert a_loop(g, ["pkg.a", "pkg.b", "pkg.c"]) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_the_graph_sees_lazy_and_relative_imports():
    g = import_graph()
    assert "geometry.neighbors" in g["geometry.density"]               # module level, relative
    assert "geometry" in g["steering.narrow_gate.gap"]                 # inside a function, absolute
    assert "saes.cache" in g["saes.store"]                             # inside a method, relative
    assert "saes.distributed" in g["saes.store"]                       # ``from . import distributed``
    assert all(m.split(".")[0] in PACKAGES for deps in g.values() for m in deps)


def test_packages_import_downward_only():
    bad = defaultdict(list)
    for mod, deps in import_graph().items():
        pkg = mod.split(".")[0]
        for dep in sorted(deps):
            top = dep.split(".")[0]
            if top != pkg and top not in ALLOWED[pkg]:
                bad[f"{pkg} -> {top}"].append(f"{mod} imports {dep}")
    assert not bad, "imports against the layers (hooks, geometry <- saes <- steering <- interp):\n" + "\n".join(
        f"  {arrow}:\n    " + "\n    ".join(v) for arrow, v in sorted(bad.items()))


def test_no_import_cycles_between_files():
    g = import_graph()
    found = cycles(g)
    new = [c for c in found if set(c) not in KNOWN_CYCLES]
    assert not new, "file-level import cycles (move the shared piece into a module both can import):\n" + "\n".join(
        "  " + " -> ".join(a_loop(g, c)) for c in new)
    gone = [sorted(k) for k in KNOWN_CYCLES if k not in [set(c) for c in found]]
    assert not gone, f"these KNOWN_CYCLES are gone: remove them from tests/test_layout.py: {gone}"
