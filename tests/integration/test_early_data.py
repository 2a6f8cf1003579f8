"""0-RTT through the proxy (RFC 8470): safe requests go upstream marked, unsafe ones get 425.

Driven by Debian's ngtcp2 client, which resumes from --session-file/--tp-file and sends the
second run's requests as early data (its log shows the 0RTT packets).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import gtls_fetch
from tests.support.procs import ProxyProcess, ThreadedOrigin, run_proxy, write_config

GTLSCLIENT = shutil.which("gtlsclient")
pytestmark = pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client is not installed")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    tmp = tmp_path_factory.mktemp("early")
    with ThreadedOrigin() as origin:
        config = write_config(tmp / "p.toml", origin.port, cert_dir=tmp / "certs")
        with run_proxy(["run", "-c", str(config)]) as running:
            yield running


def gtls(port: int, tmp: Path, path: str, *extra: str) -> tuple[str, Path]:
    """One request with the ngtcp2 client, resuming from (and saving) the session in ``tmp``."""
    target = tmp / f"dl-{len(list(tmp.iterdir()))}"
    state = [f"--session-file={tmp / 'session'}", f"--tp-file={tmp / 'tp'}"]
    return gtls_fetch(port, [path], target, extra=[*state, *extra]).log, target


def test_safe_request_in_0rtt_is_forwarded_with_early_data_header(
    proxy: ProxyProcess, tmp_path: Path
) -> None:
    _, first = gtls(proxy.port, tmp_path, "/echo")
    assert "early-data" not in json.loads((first / "echo").read_text())["headers"]
    log, second = gtls(proxy.port, tmp_path, "/echo")
    assert "type=0RTT" in log  # the client really used early data
    seen = json.loads((second / "echo").read_text())
    assert seen["headers"]["early-data"] == "1"


def test_unsafe_request_in_0rtt_gets_425(proxy: ProxyProcess, tmp_path: Path) -> None:
    body = tmp_path / "body.txt"
    body.write_text("hello")
    gtls(proxy.port, tmp_path, "/echo")  # a session ticket to resume with
    log, target = gtls(proxy.port, tmp_path, "/upload", "-m", "POST", "-d", str(body))
    assert "type=0RTT" in log
    assert ":status: 425" in log
    assert (target / "upload").read_text().startswith("425 Too Early")
    # without early data the same POST goes through
    log, target = gtls(
        proxy.port, tmp_path, "/upload", "-m", "POST", "-d", str(body), "--disable-early-data"
    )
    assert ":status: 200" in log
    assert json.loads((target / "upload").read_text())["received"] == 5


@pytest.fixture(scope="module")
def holding_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    tmp = tmp_path_factory.mktemp("hold")
    with ThreadedOrigin() as origin:
        extra = '[quic]\nearly_data_unsafe = "hold"\n'
        config = write_config(tmp / "p.toml", origin.port, extra=extra, cert_dir=tmp / "certs")
        with run_proxy(["run", "-c", str(config)]) as running:
            yield running


def test_unsafe_request_in_0rtt_is_held_until_the_handshake(
    holding_proxy: ProxyProcess, tmp_path: Path
) -> None:
    body = tmp_path / "body.txt"
    body.write_text("hello")
    gtls(holding_proxy.port, tmp_path, "/echo")  # a session ticket to resume with
    log, target = gtls(holding_proxy.port, tmp_path, "/echo", "-m", "POST", "-d", str(body))
    assert "type=0RTT" in log
    assert ":status: 200" in log
    seen = json.loads((target / "echo").read_text())
    assert seen["method"] == "POST"
    assert "early-data" not in seen["headers"]  # it went upstream after the handshake


def test_upstream_425_is_retried_once_after_the_handshake(
    proxy: ProxyProcess, tmp_path: Path
) -> None:
    gtls(proxy.port, tmp_path, "/too-early")
    log, target = gtls(proxy.port, tmp_path, "/too-early")
    assert "type=0RTT" in log
    assert ":status: 200" in log  # the origin's 425 did not reach the client
    assert "early-data" not in json.loads((target / "too-early").read_text())
    assert "425 from upstream: /too-early again after the handshake" in proxy.log_text()
