"""The aioquic engine's compatibility check: the version pin, the private-state lists, and the
refusal at server start."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import aioquic
import pytest
from aioquic.quic.connection import QuicConnection

from protocols.engines import aioquic as engine
from protocols.engines.aioquic import compat
from protocols.engines.base import EngineCompatError
from quicproxy import server
from tests.support.procs import write_config

ROOT = Path(__file__).resolve().parents[5]


def test_check_compat_and_version_pin() -> None:
    engine.check_compat()
    assert aioquic.__version__ in engine.TESTED_AIOQUIC_VERSIONS, (
        f"aioquic {aioquic.__version__} is untested: re-check protocols/engines/aioquic/ against "
        "its private state, then add the version to TESTED_AIOQUIC_VERSIONS"
    )


def test_the_pin_in_pyproject_is_the_tested_release() -> None:
    """pip installs only what check_compat accepts: a wider pin would install a release the
    proxy then refuses to start with."""
    pinned = re.search(r'"aioquic==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned is not None
    assert {pinned.group(1)} == set(engine.TESTED_AIOQUIC_VERSIONS)


def test_check_compat_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(QuicConnection, "_write_stream_limits")
    with pytest.raises(EngineCompatError, match=r"QuicConnection\._write_stream_limits"):
        engine.check_compat()


def test_an_untested_version_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioquic, "__version__", "9.9")
    with pytest.raises(EngineCompatError) as caught:
        engine.check_compat()
    message = str(caught.value)
    assert "\n" not in message
    assert "aioquic 9.9 is installed" in message
    assert "1.7.2" in message  # the tested release(s)
    assert isinstance(caught.value, RuntimeError)


def test_every_private_state_list_names_a_known_holder() -> None:
    """A list keyed by a holder ``check_compat`` does not build would check nothing: it is
    reported as missing instead (a planted one proves the check sees it)."""
    assert compat.missing_state() == []
    planted = {"NoSuchHolder": ("_x",), "QuicConnection": ("_no_such_attribute",)}
    assert compat.missing_state((planted,)) == [
        "NoSuchHolder._x",
        "QuicConnection._no_such_attribute",
    ]


def test_server_start_refuses_an_untested_aioquic(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` (every CLI command and ``serve_proxy`` go through it) checks before it makes
    a server or forks a worker."""
    monkeypatch.setattr(aioquic, "__version__", "9.9")
    made: list[bool] = []

    async def make_server(reuse_port: bool) -> server.ProxyServer:
        made.append(reuse_port)
        raise AssertionError("no server may be made")

    with pytest.raises(EngineCompatError, match=r"aioquic 9\.9 is installed"):
        server.serve(make_server, workers=1)
    assert made == []


def test_the_cli_exits_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    """``quicproxy run`` with an untested aioquic (patched in the child before the CLI runs)
    prints one line naming both versions and exits 1, before binding anything."""
    config = write_config(tmp_path / "proxy.toml", 9, cert_dir=tmp_path / "certs")
    patched = (
        "import sys, aioquic; aioquic.__version__ = '9.9'; from quicproxy.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", patched, "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("quicproxy: aioquic 9.9 is installed")
    assert "1.7.2" in lines[0]
    assert "Traceback" not in done.stderr
