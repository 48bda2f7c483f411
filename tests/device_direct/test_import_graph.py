"""No two modules of ``device_direct`` import each other (issue 17.14).

Imports made only for type checking count too: a cycle there still means neither
module can be read, tested or replaced without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import device_direct

PACKAGE = Path(device_direct.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("device_direct")}


def test_no_two_device_direct_modules_import_each_other() -> None:
    graph = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}
    pairs = sorted(
        (a, b) for a, deps in graph.items() for b in deps
        if a < b and b in graph and a in graph.get(b, set())
    )
    assert pairs == [], f"modules importing each other: {pairs}"
