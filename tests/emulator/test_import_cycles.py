"""No two modules of the server, or of the one-device runner, import each other.

Every import counts, including those under ``if TYPE_CHECKING:`` and inside functions:
a cycle hidden from the interpreter is still two modules that cannot be read, tested or
moved one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports, anywhere in it."""
    found: set[str] = set()
    package = _module_name(path).rpartition(".")[0] if path.name != "__init__.py" else (
        _module_name(path))
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # `from pkg import mod` depends on pkg.mod; `from mod import name` on mod.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                     for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def _graph(paths: list[Path]) -> dict[str, set[str]]:
    known = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, known) - {_module_name(p)} for p in paths}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_reference_server_modules_import_no_cycle() -> None:
    paths = sorted((ROOT / "emulator" / "server").rglob("*.py"))
    assert _cycles(_graph(paths)) == []


def test_the_device_runner_and_its_control_api_import_no_cycle() -> None:
    paths = [ROOT / "emulator" / name for name in
             ("device_control.py", "device_runner.py", "closed_output.py", "errors.py")]
    assert _cycles(_graph(paths)) == []


def test_the_cycle_finder_finds_a_type_checking_cycle(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert _cycles(graph) == [["a", "b"]]
