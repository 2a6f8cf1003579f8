"""HTTP/3 upstreams: Debian's ngtcp2 server and a second quicproxy as QUIC origins."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quicproxy.devcerts import DevCerts, ensure_dev_certs
from tests.support.procs import (
    CURL,
    ThreadedOrigin,
    curl,
    free_port,
    pattern_sha256,
    proxy_args,
    run_proxy,
)

GTLSSERVER = shutil.which("gtlsserver")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return ensure_dev_certs(tmp_path_factory.mktemp("certs"))


def h3_upstream(port: int, certs: DevCerts, *, ca: bool = True) -> str:
    lines = [f'addresses = ["https://127.0.0.1:{port}"]', 'protocol = "h3"', 'sni = "localhost"']
    lines.append("connect_timeout = 2")
    if ca:
        lines.append(f'ca_file = "{certs.ca_cert}"')
    return "\n".join(lines)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, certs: DevCerts) -> Iterator[tuple[int, int]]:
    """client -> proxy A -(HTTP/3)-> proxy B -> demo origin; yields (A's port, B's port)."""
    tmp = tmp_path_factory.mktemp("chain")
    with ThreadedOrigin() as origin:
        b_args = proxy_args(tmp / "b.toml", certs, f'addresses = ["127.0.0.1:{origin.port}"]')
        with run_proxy(b_args) as hop:
            a_args = proxy_args(tmp / "a.toml", certs, h3_upstream(hop.port, certs))
            with run_proxy(a_args) as proxy:
                yield proxy.port, hop.port
                assert "Traceback" not in proxy.log_text() + hop.log_text()


def test_requests_and_bodies_cross_an_http3_hop(chain: tuple[int, int], tmp_path: Path) -> None:
    port, _ = chain
    echo = json.loads(curl("--http1.1", f"https://127.0.0.1:{port}/echo?x=1").stdout)
    assert echo["headers"]["via"] == "1.1 quicproxy, 3 quicproxy"
    assert echo["query"] == "x=1"
    size = 20 * 1024 * 1024
    down = curl("--http2", f"https://127.0.0.1:{port}/bytes/{size}")
    assert hashlib.sha256(down.stdout).hexdigest() == pattern_sha256(size)
    payload = tmp_path / "up.bin"
    payload.write_bytes(os.urandom(8 * 1024 * 1024))
    up = curl("--http2", "--data-binary", f"@{payload}", f"https://127.0.0.1:{port}/upload")
    assert json.loads(up.stdout)["sha256"] == hashlib.sha256(payload.read_bytes()).hexdigest()


def test_many_requests_share_one_quic_connection(chain: tuple[int, int]) -> None:
    port, _ = chain
    h2load = shutil.which("h2load")
    if h2load is None:
        pytest.skip("h2load is not installed")
    result = subprocess.run(
        [h2load, "-n", "300", "-c", "3", "-m", "20", f"https://127.0.0.1:{port}/bytes/2000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "300 succeeded" in result.stdout, result.stdout


def test_unverifiable_http3_upstream_is_a_502_naming_the_cause(
    tmp_path: Path, certs: DevCerts
) -> None:
    with ThreadedOrigin() as origin:
        b_args = proxy_args(tmp_path / "b.toml", certs, f'addresses = ["127.0.0.1:{origin.port}"]')
        with run_proxy(b_args) as hop:
            upstream = h3_upstream(hop.port, certs, ca=False)
            with run_proxy(proxy_args(tmp_path / "a.toml", certs, upstream)) as proxy:
                result = curl("-w", "%{http_code}", f"https://127.0.0.1:{proxy.port}/echo")
                assert result.stdout.endswith(b"502")
                assert "QUIC handshake" in proxy.log_text()


def test_lost_http3_upstream_fails_fast_and_recovers(tmp_path: Path, certs: DevCerts) -> None:
    with ThreadedOrigin() as origin:
        origin_upstream = f'addresses = ["127.0.0.1:{origin.port}"]'
        with run_proxy(proxy_args(tmp_path / "b.toml", certs, origin_upstream)) as hop:
            hop_port = hop.port
            a_args = proxy_args(tmp_path / "a.toml", certs, h3_upstream(hop_port, certs))
            with run_proxy(a_args) as proxy:
                url = f"https://127.0.0.1:{proxy.port}/status/200"
                assert curl("-w", "%{http_code}", url).stdout.endswith(b"200")
                hop.stop()
                started = time.monotonic()
                assert curl("-w", "%{http_code}", url).stdout[-3:] in (b"502", b"504")
                assert time.monotonic() - started < 15
                again = proxy_args(tmp_path / "b2.toml", certs, origin_upstream)
                config = tmp_path / "b2.toml"
                config.write_text(
                    config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{hop_port}"')
                )
                with run_proxy(again):
                    assert curl("-w", "%{http_code}", url).stdout.endswith(b"200")


@pytest.mark.skipif(GTLSSERVER is None, reason="ngtcp2-server (gtlsserver) is not installed")
def test_ngtcp2_server_as_http3_origin(tmp_path: Path, certs: DevCerts) -> None:
    htdocs = tmp_path / "htdocs"
    htdocs.mkdir()
    content = os.urandom(2_000_000)
    (htdocs / "file.bin").write_bytes(content)
    port = free_port()
    server = subprocess.Popen(
        [str(GTLSSERVER), "-q", "-d", str(htdocs), "127.0.0.1", str(port), str(certs.key),
         str(certs.cert)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.3)
        with run_proxy(proxy_args(tmp_path / "a.toml", certs, h3_upstream(port, certs))) as proxy:
            result = curl("--http2", f"https://127.0.0.1:{proxy.port}/file.bin")
            assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(content).digest()
            args: list[str] = []
            for _ in range(5):
                args += ["-o", "/dev/null", f"https://127.0.0.1:{proxy.port}/file.bin"]
            statuses = curl("--http1.1", "-w", "%{http_code}\n", *args)
            assert statuses.stdout.split() == [b"200"] * 5
    finally:
        server.terminate()
        server.wait(10)


def test_auto_upstream_moves_to_http3_after_alt_svc(tmp_path: Path, certs: DevCerts) -> None:
    """The hop (a quicproxy) advertises h3 on its TCP responses; proxy A, with protocol auto,
    starts over TCP (ALPN h2), remembers the advertisement and switches to HTTP/3."""
    with ThreadedOrigin() as origin:
        origin_upstream = f'addresses = ["127.0.0.1:{origin.port}"]'
        with run_proxy(proxy_args(tmp_path / "b.toml", certs, origin_upstream)) as hop:
            upstream = (
                f'addresses = ["https://127.0.0.1:{hop.port}"]\nsni = "localhost"\n'
                f'ca_file = "{certs.ca_cert}"\nprotocol = "auto"'
            )
            with run_proxy(proxy_args(tmp_path / "a.toml", certs, upstream)) as proxy:
                url = f"https://127.0.0.1:{proxy.port}/status/200"
                for _ in range(4):
                    assert curl("--http1.1", "-w", "%{http_code}", url).stdout.endswith(b"200")
                protocols = [
                    line.split()[5] for line in hop.log_text().splitlines() if "/status/200" in line
                ]
                assert protocols[0] == "h2"  # first contact: TCP with ALPN
                assert protocols[-1] == "h3"  # then the advertised HTTP/3


def test_advertised_http3_that_does_not_answer_falls_back_to_tcp(
    tmp_path: Path, certs: DevCerts
) -> None:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    with ThreadedOrigin(context) as origin:  # its /alt-svc advertises h3 on a dead port
        upstream = (
            f'addresses = ["https://127.0.0.1:{origin.port}"]\nsni = "localhost"\n'
            f'ca_file = "{certs.ca_cert}"\nprotocol = "auto"'
        )
        with run_proxy(proxy_args(tmp_path / "a.toml", certs, upstream)) as proxy:
            base = f"https://127.0.0.1:{proxy.port}"
            assert curl("-w", "%{http_code}", f"{base}/alt-svc").stdout.endswith(b"200")
            started = time.monotonic()
            assert curl("-w", "%{http_code}", f"{base}/status/200").stdout.endswith(b"200")
            assert time.monotonic() - started < 4  # one short HTTP/3 attempt, then TCP
            assert "using TCP for a while" in proxy.log_text()
            started = time.monotonic()
            assert curl("-w", "%{http_code}", f"{base}/status/200").stdout.endswith(b"200")
            assert time.monotonic() - started < 1  # HTTP/3 is not tried again right away


async def test_http3_upstream_resumes_sessions_reuses_tokens_and_health_checks_over_h3(
    certs: DevCerts,
) -> None:
    """A Connector's second QUIC connection to a peer resumes with the first one's session
    ticket and skips the Retry with its NEW_TOKEN token; another Connector (its own caches)
    does neither. Health checks over h3 go through the same Connector."""
    from protocols.messages import RequestHead
    from quicproxy.config import (
        Config,
        ListenConfig,
        QuicConfig,
        RouteConfig,
        TlsConfig,
        UpstreamConfig,
    )
    from quicproxy.demo import DemoOrigin
    from quicproxy.lb.health import ActiveCheck, HealthChecker
    from quicproxy.server import ProxyServer
    from quicproxy.upstream.connector import Connector
    from quicproxy.upstream.peer import HttpPeer
    from quicproxy.upstream.quic_client import H3UpstreamConnection

    origin = DemoOrigin()
    await origin.start()
    config = Config(
        listen=(ListenConfig("127.0.0.1", 0, True, True),),
        upstreams=(UpstreamConfig("o", (("127.0.0.1", origin.port),)),),
        routes=(RouteConfig("o"),),
        tls=TlsConfig(certs.cert, certs.key),
    )
    server = ProxyServer(config, quic_options=QuicConfig(retry="always"))
    await server.start()
    try:
        port = server.addresses[0][1]
        peer = HttpPeer(
            "127.0.0.1", port, tls=True, protocol="h3", sni="localhost", ca_file=certs.ca_cert
        )
        router = server.quic_listeners[0].router
        connector = Connector()
        first = await connector.connect(peer)
        assert isinstance(first, H3UpstreamConnection)
        assert not first.quic.tls.session_resumed
        # one exchange: the server's session ticket arrives meanwhile
        head = RequestHead(b"GET", b"https", b"localhost", b"/status/204", [])
        stream = first.open_stream(head, end_stream=True)
        assert (await asyncio.wait_for(stream.response, 10)).status == 204
        first.close_transport()
        assert router.retries_sent == 1
        second = await connector.connect(peer)
        try:
            assert isinstance(second, H3UpstreamConnection)
            assert second.quic.tls.session_resumed
            assert router.retries_sent == 1  # the NEW_TOKEN token spared it the Retry
        finally:
            second.close_transport()
        other = await Connector().connect(peer)  # tickets and tokens are per Connector
        try:
            assert isinstance(other, H3UpstreamConnection)
            assert not other.quic.tls.session_resumed
            assert router.retries_sent == 2
        finally:
            other.close_transport()
        checker = HealthChecker("o", [], ActiveCheck(path="/status/200", timeout=5), connector)
        assert await checker.probe(peer) is None
        bad = HealthChecker("o", [], ActiveCheck(path="/status/500", timeout=5))
        assert await bad.probe(peer) == "status 500, expected 200-399"
    finally:
        await server.close()
        await origin.stop()
