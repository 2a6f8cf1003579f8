"""protocols/ is sans-IO: it imports no asyncio, socket or quicproxy (DESIGN.md's one rule).

Every module under protocols/ (sub-packages included) may import only the protocol libraries
of ``ALLOWED_ROOTS``, its own package (relative imports) and the standard library minus
``FORBIDDEN``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PROTOCOLS = Path(__file__).resolve().parents[2] / "protocols"
ALLOWED_ROOTS = {
    "h11",
    "h2",
    "hpack",
    "aioquic",
    "pylsqpack",
    "__future__",
    # quic_tokens.py seals Retry / NEW_TOKEN tokens with an AEAD: pure computation, no I/O, and
    # already installed as aioquic's own dependency.
    "cryptography",
}
FORBIDDEN = {"asyncio", "socket", "selectors", "ssl", "threading", "quicproxy", "time"}


def imported_roots(path: Path) -> set[str]:
    """The top-level package of every absolute import in ``path`` (relative ones are skipped)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def disallowed(roots: set[str]) -> set[str]:
    """The roots that are neither allowed libraries nor permitted standard-library modules."""
    stdlib = set(sys.stdlib_module_names) - FORBIDDEN
    return {root for root in roots if root not in ALLOWED_ROOTS and root not in stdlib}


def test_protocols_imports_only_protocol_libraries_and_pure_stdlib() -> None:
    files = sorted(PROTOCOLS.rglob("*.py"))
    assert len(files) >= 30
    assert any(path.parent.name == "aioquic" for path in files)  # sub-packages are walked
    for path in files:
        bad = disallowed(imported_roots(path))
        assert not bad, f"{path.relative_to(PROTOCOLS)} imports {sorted(bad)}"


def test_the_check_itself_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import asyncio\nfrom quicproxy.session import Session\nimport requests\n"
        "import json\nfrom h2.connection import H2Connection\nfrom . import sibling\n"
    )
    roots = imported_roots(bad)
    assert roots >= {"asyncio", "quicproxy", "requests", "json", "h2"}
    assert disallowed(roots) == {"asyncio", "quicproxy", "requests"}
