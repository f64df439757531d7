"""The package layout: ``core`` never imports ``toy`` or ``lab``, ``toy`` never imports ``lab``, and no module
imports itself back through others (every import counts, also those inside functions)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "ddsutils"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _known() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """``{module: {package modules it imports}}``, from every ``import`` statement in the file."""
    known = _known()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in known:
                    t = t.rpartition(".")[0]
                if t and t != name and t != "ddsutils":
                    deps.add(t)
        graph[name] = deps
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("core", "toy", "lab") else "entry"


@pytest.mark.parametrize("layer, forbidden", [("core", {"toy", "lab", "entry"}), ("toy", {"lab", "entry"}),
                                              ("lab", {"entry"})])
def test_import_direction(layer, forbidden):
    graph = import_graph()
    bad = sorted(f"{m} imports {d}" for m, deps in graph.items() if _layer(m) == layer
                 for d in deps if _layer(d) in forbidden)
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_sees_lazy_imports(tmp_path):
    """The checker reads imports inside functions too (a lazy import is still a dependency)."""
    graph = import_graph()
    assert "ddsutils.toy.judges" in graph["ddsutils.toy.oracle"]
    assert "ddsutils.core.segmenter" in graph["ddsutils.toy.segeval"]
    assert any(d.startswith("ddsutils.core") for d in graph["ddsutils.dds"])
