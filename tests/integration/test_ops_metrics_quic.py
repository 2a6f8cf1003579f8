"""QUIC counters on /metrics: handshakes, 0-RTT accepted and rejected, Retry sent, packets lost.

The ngtcp2 client resumes from a saved session and offers 0-RTT; a second proxy process does not
know the first one's tickets, so the same offer is rejected there. Packet loss comes from
``interop.relay`` dropping datagrams between aioquic clients and the proxy.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aioquic.asyncio.client import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from interop.relay import Impairment, Relay, RelayConfig
from tests.integration.test_quic_loss import Download
from tests.support.admin import admin_url, scrape, total, wait_for
from tests.support.clients import GTLSCLIENT, gtls_fetch
from tests.support.procs import ThreadedOrigin, run_proxy

pytestmark = [
    pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client is not installed"),
    pytest.mark.timeout(90),
]


def _config(path: Path, origin_port: int, quic: str = "") -> list[str]:
    path.write_text(
        f"""
[server]
workers = 1
grace_period = 1

[tls]
dev_cert_dir = "{path.parent / "certs"}"

[[listen]]
address = "127.0.0.1:0"

[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{origin_port}"]

[[route]]
upstream = "origin"

[admin]
address = "127.0.0.1:0"

[quic]
{quic}
"""
    )
    return ["run", "-c", str(path)]


def _gtls(port: int, state: Path, download: Path) -> str:
    session = [f"--session-file={state / 'session'}", f"--tp-file={state / 'tp'}"]
    return gtls_fetch(port, ["/bytes/100"], download, extra=session).log


def test_handshakes_early_data_and_retry_are_counted(
    tmp_path: Path, demo_origin: ThreadedOrigin
) -> None:
    state = tmp_path / "client"
    state.mkdir()
    with run_proxy(_config(tmp_path / "a.toml", demo_origin.port)) as proxy:
        base = admin_url(proxy)
        _gtls(proxy.port, state, tmp_path / "d1")  # a full handshake; the ticket is saved
        log = _gtls(proxy.port, state, tmp_path / "d2")  # resumed, with 0-RTT
        assert "type=0RTT" in log
        assert wait_for(lambda: total(scrape(base), "quicproxy_quic_handshakes_total") == 2)
        samples = scrape(base)
        name = "quicproxy_quic_early_data_total"
        assert total(samples, name, result="accepted") == 1
        assert total(samples, name, result="rejected") == 0
        assert total(samples, "quicproxy_quic_retry_sent_total") == 0
    # another process knows no ticket of the first: the offer is rejected; Retry on every Initial
    other = tmp_path / "b"
    other.mkdir()
    args = _config(other / "b.toml", demo_origin.port, quic='retry = "always"')
    with run_proxy(args) as proxy:
        base = admin_url(proxy)
        log = _gtls(proxy.port, state, tmp_path / "d3")
        assert "type=0RTT" in log  # offered
        assert (tmp_path / "d3" / "100").stat().st_size == 100  # and answered after all

        def counted() -> bool:
            samples = scrape(base)
            return total(samples, "quicproxy_quic_early_data_total", result="rejected") == 1

        assert wait_for(counted), scrape(base)
        samples = scrape(base)
        assert total(samples, "quicproxy_quic_early_data_total", result="accepted") == 0
        assert total(samples, "quicproxy_quic_retry_sent_total") >= 1
        assert total(samples, "quicproxy_quic_handshakes_total") == 1


async def _downloads(port: int, authority: str, count: int) -> int:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)

    async def one() -> int:
        async with connect("127.0.0.1", port, configuration=config, create_protocol=Download) as c:
            assert isinstance(c, Download)
            c.get("/bytes/200000", authority)
            await c.done
            return len(c.body)

    sizes = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 60)
    return sum(sizes)


def test_packets_lost_are_counted(tmp_path: Path, demo_origin: ThreadedOrigin) -> None:
    with run_proxy(_config(tmp_path / "p.toml", demo_origin.port)) as proxy:
        base = admin_url(proxy)
        lossy = Impairment(loss=10.0)
        relay_config = RelayConfig(server=("127.0.0.1", proxy.port), to_client=lossy)

        async def run() -> int:
            async with Relay(relay_config) as relay:
                return await _downloads(relay.port, f"127.0.0.1:{proxy.port}", 3)

        assert asyncio.run(run()) == 3 * 200000
        assert wait_for(lambda: total(scrape(base), "quicproxy_quic_packets_lost_total") > 0)
