"""protocols/ is sans-IO: it imports no asyncio, socket or quicproxy (DESIGN.md's one rule)."""

from __future__ import annotations

import ast
from pathlib import Path

PROTOCOLS = Path(__file__).resolve().parents[2] / "protocols"
ALLOWED_ROOTS = {"h11", "h2", "hpack", "aioquic", "pylsqpack", "__future__"}
FORBIDDEN = {"asyncio", "socket", "selectors", "ssl", "threading", "quicproxy", "time"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_protocols_imports_only_protocol_libraries_and_pure_stdlib() -> None:
    files = sorted(PROTOCOLS.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        roots = imported_roots(path)
        assert not roots & FORBIDDEN, f"{path.name} imports {sorted(roots & FORBIDDEN)}"


def test_the_check_itself_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom quicproxy.session import Session\n")
    assert imported_roots(bad) >= {"asyncio", "quicproxy"}
