"""Address validation (Retry always / above a rate, NEW_TOKEN) and the QUIC facts hooks see.

Driven by aioquic's client (it keeps NEW_TOKEN tokens; its qlog shows Retry packets), Debian's
ngtcp2 client (its log names every packet type; its --token-file could not read back the
tokens it wrote) and curl_cffi's HTTP/3 client for the hook-facing facts.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio.client import connect
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.logger import QuicLogger

from quicproxy.config import Config, ListenConfig, TlsConfig
from quicproxy.config_quic import QuicConfig
from quicproxy.devcerts import ensure_dev_certs
from quicproxy.hooks import ProxyHttp
from quicproxy.server import ProxyServer
from quicproxy.session import Session
from quicproxy.upstream.peer import HttpPeer
from tests.support.clients import gtls_fetch, h3_request
from tests.support.procs import ThreadedOrigin, run_proxy, write_config

GTLSCLIENT = shutil.which("gtlsclient")
needs_gtls = pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client is not installed")


def gtls(port: int, tmp: Path, *extra: str, path: str = "/bytes/3000") -> tuple[str, bytes]:
    """One small download with the ngtcp2 client; returns its log and the body."""
    target = tmp / f"dl-{len(list(tmp.iterdir()))}"
    result = gtls_fetch(port, [path], target, extra=extra)
    body = target / path.rsplit("/", 1)[-1]
    return result.log, body.read_bytes() if body.exists() else b""


async def handshake(port: int, token: bytes = b"") -> tuple[bool, list[bytes]]:
    """One aioquic client handshake: (was a Retry received, NEW_TOKEN tokens received)."""
    logger = QuicLogger()
    configuration = QuicConfiguration(
        alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE, quic_logger=logger, token=token
    )
    tokens: list[bytes] = []
    async with connect(
        "127.0.0.1", port, configuration=configuration, token_handler=tokens.append
    ) as client:
        await asyncio.wait_for(client.ping(), 5)  # the NEW_TOKEN comes with HANDSHAKE_DONE
    events = [event for trace in logger.to_dict()["traces"] for event in trace["events"]]
    retried = any(
        event["name"] == "transport:packet_received"
        and event["data"]["header"]["packet_type"] == "retry"
        for event in events
    )
    return retried, tokens


async def test_retry_always_then_new_token_skips_it(tmp_path: Path) -> None:
    server = await facts_server(tmp_path, QuicConfig(retry="always"))
    port = server.addresses[0][1]
    try:
        retried, tokens = await handshake(port)
        assert retried and len(tokens) == 1
        retried, again = await handshake(port, tokens[0])
        assert not retried and len(again) == 1  # a fresh token each time
        # a forged or foreign token is no NEW_TOKEN: the server falls back to a Retry
        retried, _ = await handshake(port, b"N" + bytes(60))
        assert retried
    finally:
        await server.close()


async def test_no_new_token_when_switched_off(tmp_path: Path) -> None:
    server = await facts_server(tmp_path, QuicConfig(retry="off", new_token=False))
    try:
        retried, tokens = await handshake(server.addresses[0][1])
        assert not retried and tokens == []
    finally:
        await server.close()


@needs_gtls
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("threshold", "retried"), [(0, True), (1000, False)])
def test_retry_auto_only_above_the_rate(tmp_path: Path, threshold: int, retried: bool) -> None:
    with ThreadedOrigin() as origin:
        extra = f'[quic]\nretry = "auto"\nretry_threshold = {threshold}\n'
        config = write_config(tmp_path / "p.toml", origin.port, extra=extra, cert_dir=tmp_path)
        with run_proxy(["run", "-c", str(config)]) as proxy:
            log, body = gtls(proxy.port, tmp_path)
            assert ("type=Retry" in log) is retried
            assert len(body) == 3000


class FactsProxy(ProxyHttp[None]):
    """Answers every request with the QUIC facts of its session."""

    def new_ctx(self) -> None:
        return None

    async def request_filter(self, session: Session, ctx: None) -> bool:
        facts: dict[str, Any] = dict(session.downstream.quic)
        facts["early_data"] = session.downstream.early_data
        await session.respond(200, json.dumps(facts) + "\n")
        return True

    async def upstream_peer(self, session: Session, ctx: None) -> HttpPeer:
        raise AssertionError("every request is answered by request_filter")


async def facts_server(tmp_path: Path, quic: QuicConfig) -> ProxyServer:
    """An in-process server on a free port whose every answer is the session's QUIC facts."""
    certs = ensure_dev_certs(tmp_path / "certs")
    config = Config(
        listen=(ListenConfig("127.0.0.1", 0),),
        upstreams=(),
        routes=(),
        tls=TlsConfig(certs.cert, certs.key),
        quic=quic,
    )
    server = ProxyServer(config, FactsProxy())
    await server.start()
    return server


async def test_hooks_see_the_quic_facts(tmp_path: Path) -> None:
    server = await facts_server(tmp_path, QuicConfig(retry="always"))
    port = server.addresses[0][1]
    try:
        response = await asyncio.to_thread(h3_request, f"https://127.0.0.1:{port}/")
    finally:
        await server.close()
    assert response.http_version == "3"
    facts = response.json()
    assert facts["version"] == 1
    assert facts["address_validated"] is True  # Retry token, then the handshake
    assert facts["early_data"] is False and facts["zero_rtt"] is False
    assert 0 < facts["rtt"] < 1.0
    assert len(bytes.fromhex(facts["host_connection_id"])) == 8


@needs_gtls
@pytest.mark.timeout(90)
def test_retry_with_resumption_and_0rtt_across_two_runs(tmp_path: Path) -> None:
    """The issue's "done" check: Retry on, then a second run resumes and sends 0-RTT."""
    with ThreadedOrigin() as origin:
        extra = "[quic]\nretry = true\n"
        config = write_config(tmp_path / "p.toml", origin.port, extra=extra, cert_dir=tmp_path)
        with run_proxy(["run", "-c", str(config)]) as proxy:
            runs = tmp_path / "runs"
            runs.mkdir()
            state = [f"--session-file={tmp_path / 'session'}", f"--tp-file={tmp_path / 'tp'}"]
            log, body = gtls(proxy.port, runs, *state)
            assert "type=Retry" in log and "type=0RTT" not in log and len(body) == 3000
            log, body = gtls(proxy.port, runs, *state, path="/echo")
            assert "type=Retry" in log  # no token: validated again
            assert "type=0RTT" in log  # and the request still went as early data,
            assert json.loads(body)["headers"]["early-data"] == "1"  # accepted as such
