"""Only protocols/engines/aioquic/ imports aioquic's private modules or names (issue 13).

Everything else in protocols/, quicproxy/ and interop/ uses aioquic's public modules and the
engine's interface, so that a second engine (qh3) can be a sibling package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
WALKED = ("protocols", "quicproxy", "interop")
ENGINE = ROOT / "protocols" / "engines" / "aioquic"


def private_imports(path: Path) -> list[str]:
    """Every import in ``path`` of a private aioquic module (``aioquic._x``, ``aioquic.y._z``)
    or of a private name from an aioquic module (``from aioquic.x import _y``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _private_module(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "aioquic":
                continue
            if _private_module(node.module):
                found.append(node.module)
            found += [
                f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_")
            ]
    return found


def _private_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "aioquic" and any(part.startswith("_") for part in parts[1:])


def test_no_private_aioquic_import_outside_the_engine() -> None:
    files = [path for top in WALKED for path in sorted((ROOT / top).rglob("*.py"))]
    assert len(files) > 50
    offenders = {
        str(path.relative_to(ROOT)): private_imports(path)
        for path in files
        if not path.is_relative_to(ENGINE) and private_imports(path)
    }
    assert offenders == {}


def test_the_engine_is_where_the_private_imports_are() -> None:
    """The walk sees the engine's own private imports (so it would see anyone else's)."""
    assert private_imports(ENGINE / "gating.py") == ["aioquic._buffer"]


def test_the_check_catches_a_planted_private_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import aioquic._buffer\n"
        "from aioquic._crypto import CryptoError\n"
        "from aioquic.quic.connection import _private_helper, QuicConnection\n"
        "from aioquic import _buffer as b\n"
        "import aioquic.quic.packet\n"
        "from aioquic.buffer import Buffer\n"
        "from ._local import thing\n"
    )
    assert private_imports(bad) == [
        "aioquic._buffer",
        "aioquic._crypto",
        "aioquic.quic.connection._private_helper",
        "aioquic._buffer",
    ]
