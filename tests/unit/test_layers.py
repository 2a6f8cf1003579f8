"""quicproxy's layers: a module imports only from its own layer or below, and no import cycles.

The layer list is the one in README's "Layout" section; a new module gets a line here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "quicproxy"

# The most specific prefix wins. 1: values, config, byte transports; 2: drivers, session and
# upstream connections; 3: hooks and balancing; 4: the pipeline; 5: frontends; 6: server; 7: CLI.
LAYERS = {
    "quicproxy.net": 1,
    "quicproxy.body": 1,
    "quicproxy.errors": 1,
    "quicproxy.http": 1,
    "quicproxy.config": 1,
    "quicproxy.config_reader": 1,
    "quicproxy.config_quic": 1,
    "quicproxy.config_tls": 1,
    "quicproxy.grpc": 1,
    "quicproxy.grpcweb": 1,
    "quicproxy.pidfile": 1,
    "quicproxy.request_rules": 1,
    "quicproxy.retry": 1,
    "quicproxy.devcerts": 1,
    "quicproxy.demo": 1,
    "quicproxy.upstream.peer": 1,
    "quicproxy.streamio": 2,
    "quicproxy.tcpdriver": 2,
    "quicproxy.session": 2,
    "quicproxy.forwarding": 2,
    "quicproxy.altsvc": 2,
    "quicproxy.accesslog": 2,
    "quicproxy.tracing": 2,
    "quicproxy.metrics": 2,
    "quicproxy.upstream": 2,
    "quicproxy.hooks": 3,
    "quicproxy.lb": 3,
    "quicproxy.static": 3,
    "quicproxy.pipeline": 4,
    "quicproxy.proxy": 4,
    "quicproxy.frontend": 5,
    "quicproxy.admin": 5,
    "quicproxy.reload": 5,
    "quicproxy.server": 6,
    "quicproxy.cli": 7,
    "quicproxy.__main__": 7,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    matches = [
        (len(p), layer) for p, layer in LAYERS.items() if module == p or module.startswith(p + ".")
    ]
    return max(matches)[1] if matches else None


def imports_of(path: Path, source: str | None = None) -> set[str]:
    """The quicproxy modules ``path`` imports at run time, anywhere in the file (functions
    included; ``if TYPE_CHECKING:`` blocks excluded: annotations make no cycle)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(source if source is not None else path.read_text(), filename=str(path))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("quicproxy"):
                found.add(_existing(target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("quicproxy"))
    return found


def _existing(target: str, names: list[str]) -> str:
    """``from .pkg import module`` imports the module, not the package."""
    directory = PACKAGE.parent / Path(*target.split("."))
    if directory.is_dir() and len(names) == 1 and (directory / f"{names[0]}.py").exists():
        return f"{target}.{names[0]}"
    return target


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer() -> None:
    missing = [m for m in graph() if m != "quicproxy" and layer_of(m) is None]
    assert not missing, f"add these to LAYERS: {missing}"


def test_imports_go_down_the_layers() -> None:
    wrong = []
    for module, targets in graph().items():
        own = layer_of(module)
        for target in targets:
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                wrong.append(f"{module} (layer {own}) imports {target} (layer {theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    edges = graph()
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for target in sorted(edges.get(node, ())):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(node)

    for start in sorted(edges):
        if start not in done and start != "quicproxy":
            visit(start, [start])
    assert not cycles, f"import cycles: {cycles[:3]}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..pipeline import run\n", "quicproxy.pipeline"),
        ("def f():\n    from quicproxy.server import serve\n", "quicproxy.server"),
    ],
)
def test_the_check_sees_relative_and_function_level_imports(source: str, expected: str) -> None:
    planted = PACKAGE / "upstream" / "planted.py"  # parsed from `source`, never written
    assert expected in imports_of(planted, source)
    assert layer_of("quicproxy.upstream.planted") == 2 < (layer_of(expected) or 0)


def test_type_only_imports_are_not_edges() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..server import X\n"
    assert imports_of(PACKAGE / "upstream" / "planted.py", source) == set()
