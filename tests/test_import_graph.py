"""The package code's import graph: layers import downwards only, and no two modules import each other.

Layers (bottom to top): ptq <- calibration <- evaluations <- scripts. Every ``import`` / ``from ...
import`` in a module counts, at module level or inside a function (a function-level import is
still a dependency, only a later one).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["ptq", "calibration", "evaluations", "scripts"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (``from a.b import c`` counts ``a.b.c`` when that is a module)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import ptq.algorithms.gptq` -> the module itself
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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


def is_package_edge(a: str, b: str) -> bool:
    """``a`` is a package ``__init__`` re-exporting its own submodule ``b`` (or ``b`` is ``a``'s parent package)."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_upward_imports():
    graph = import_graph()
    upward = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer(b) > layer(a))
    assert not upward, "imports must point down (ptq <- calibration <- evaluations <- scripts):\n" + "\n".join(upward)


def test_no_import_cycles_between_modules():
    graph = import_graph()
    # a package's __init__ re-exporting its submodules, which import siblings through the package, is not a cycle
    # between two modules of code: drop the edges between a package and what it contains
    plain = {a: {b for b in deps if not is_package_edge(a, b)} for a, deps in graph.items()}
    found = cycles(plain)
    assert not found, "modules that import each other (directly or through others):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "ptq"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    from calibration import x\n")
    (pkg / "b.py").write_text("from .a import f\n")
    known = {"ptq.a", "ptq.b", "calibration"}
    assert imports_of("ptq.a", pkg / "a.py", known) == {"calibration"}
    assert imports_of("ptq.b", pkg / "b.py", known) == {"ptq.a"}
    assert cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]
