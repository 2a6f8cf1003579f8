"""Request rules at the edge, on h1, h2 and h3: paths, CONNECT, body size, slow clients,
hop-by-hop fields, forwarding headers, and upstream work stopped when the client goes away.

Each test checks what reached the origin (a RecordingOrigin), not only what the client saw.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import H3Request, aioquic_requests, curl_request
from tests.support.procs import CURL, ProxyProcess, proxy_in_front
from tests.support.rawclients import H2Client, tls_socket
from tests.support.recording import OriginRequest, RecordingOrigin

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def _read_all(sock: socket.socket, limit: float = 5.0) -> bytes:
    """Read until the peer closes or ``limit`` seconds pass."""
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ssl.SSLError):
            break
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


# --- paths: normalized before routing, and the routed path is the forwarded path --------------


@pytest.fixture(scope="module")
def two_origins() -> Iterator[tuple[RecordingOrigin, RecordingOrigin]]:
    with RecordingOrigin() as site, RecordingOrigin() as api:
        yield site, api


@pytest.fixture(scope="module")
def routed(
    tmp_path_factory: pytest.TempPathFactory,
    proxy_cert_dir: Path,
    two_origins: tuple[RecordingOrigin, RecordingOrigin],
) -> Iterator[ProxyProcess]:
    site, api = two_origins
    extra = f"""path_prefix = "/"

[[upstream]]
name = "api"
addresses = ["http://127.0.0.1:{api.port}"]

[[route]]
upstream = "api"
path_prefix = "/api/"
"""
    with proxy_in_front(
        site.port, tmp_path_factory.mktemp("routed"), cert_dir=proxy_cert_dir, extra=extra
    ) as proxy:
        yield proxy


def _fetch(version: str, port: int, path: str, tmp: Path) -> int:
    if version == "3":
        return aioquic_requests(port, [H3Request(path)], timeout=20)[0].status
    url = f"https://localhost:{port}{path}"
    return curl_request(version, url, tmp, extra=["--path-as-is"]).status


@pytest.mark.parametrize("version", ["1.1", "2", "3"])
def test_dot_segments_are_removed_and_the_route_follows_the_forwarded_path(
    version: str,
    routed: ProxyProcess,
    two_origins: tuple[RecordingOrigin, RecordingOrigin],
    tmp_path: Path,
) -> None:
    site, api = two_origins
    tag = f"v{version.replace('.', '')}"
    assert _fetch(version, routed.port, f"/public/../api/{tag}/./x", tmp_path) == 200
    assert api.wait_for(lambda: any(r.target == f"/api/{tag}/x".encode() for r in api.requests))
    assert _fetch(version, routed.port, f"/api/../public/%2e%2E/{tag}", tmp_path) == 200
    assert site.wait_for(lambda: any(r.target == f"/{tag}".encode() for r in site.requests))
    assert not any(b".." in r.target or b"/./" in r.target for r in site.requests + api.requests)


@pytest.mark.parametrize("version", ["1.1", "2", "3"])
def test_a_path_above_the_root_is_400_and_reaches_nothing(
    version: str,
    routed: ProxyProcess,
    two_origins: tuple[RecordingOrigin, RecordingOrigin],
    tmp_path: Path,
) -> None:
    site, api = two_origins
    before = len(site.heads) + len(api.heads)
    for path in ("/../../etc/passwd", "/a/../../etc/passwd", "/%2e%2e/etc/passwd"):
        assert _fetch(version, routed.port, path, tmp_path) == 400
    time.sleep(0.2)
    assert len(site.heads) + len(api.heads) == before


def test_connect_is_refused_over_h2(
    routed: ProxyProcess, two_origins: tuple[RecordingOrigin, RecordingOrigin]
) -> None:
    site, api = two_origins
    before = len(site.heads) + len(api.heads)
    client = H2Client(routed.port)
    try:
        stream_id = client.send([(":method", "CONNECT"), (":authority", "example.com:443")])
        assert client.status(stream_id) == 501
        ok = client.request("GET", "/after-connect")
        assert client.status(ok) == 200
    finally:
        client.close()
    assert site.wait_for(lambda: any(r.target == b"/after-connect" for r in site.requests))
    assert len(site.heads) + len(api.heads) == before + 1


def test_forwarding_headers_from_an_untrusted_client_are_replaced(
    routed: ProxyProcess, two_origins: tuple[RecordingOrigin, RecordingOrigin], tmp_path: Path
) -> None:
    site, _ = two_origins
    forged = [("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6"), ("x-real", "1")]
    url = f"https://localhost:{routed.port}/forged"
    for version in ("1.1", "2"):
        assert curl_request(version, url, tmp_path, headers=forged).status == 200
    assert aioquic_requests(routed.port, [H3Request("/forged", headers=forged)])[0].status == 200
    assert site.wait_for(lambda: sum(r.target == b"/forged" for r in site.requests) == 3)
    for request in (r for r in site.requests if r.target == b"/forged"):
        assert request.header(b"x-forwarded-for") == b"127.0.0.1"
        assert request.header(b"forwarded") is not None
        assert b"6.6.6.6" not in request.header(b"forwarded")  # type: ignore[operator]


# --- hop-by-hop fields, both ways ------------------------------------------------------------


def _hop_response(request: OriginRequest) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: x-origin-hop\r\n"
        b"x-origin-hop: secret\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\n"
        b"upgrade: h2c\r\nx-kept: yes\r\n\r\nok"
    )


@pytest.mark.parametrize("version", ["1.1", "2", "3"])
def test_hop_by_hop_fields_are_removed_both_ways(
    version: str, tmp_path: Path, proxy_cert_dir: Path
) -> None:
    sent = [
        ("connection", "x-client-hop"),
        ("x-client-hop", "secret"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ("te", "gzip"),
        ("x-kept", "yes"),
    ]
    if version != "1.1":  # h2/h3 clients may not send connection-specific fields at all
        sent = [("x-kept", "yes")]
    with (
        RecordingOrigin(responder=_hop_response) as origin,
        proxy_in_front(origin.port, tmp_path, cert_dir=proxy_cert_dir) as proxy,
    ):
        if version == "3":
            response = aioquic_requests(proxy.port, [H3Request("/hop", headers=sent)])[0]
        else:
            url = f"https://localhost:{proxy.port}/hop"
            response = curl_request(version, url, tmp_path, headers=sent)
        assert response.status == 200
        names = {name for name, _ in response.headers}
        assert "x-kept" in names
        assert not names & {"x-origin-hop", "keep-alive", "proxy-connection", "upgrade"}
        assert response.get("connection") in (None, "keep-alive")
        assert origin.wait_for(lambda: bool(origin.requests))
        seen = {name for name, _ in origin.requests[0].headers}
        assert b"x-kept" in seen
        hop = {b"x-client-hop", b"keep-alive", b"proxy-connection", b"http2-settings", b"te"}
        assert not seen & hop


# --- body size: declared and counted while streaming -----------------------------------------


@pytest.fixture(scope="module")
def small_body() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as origin:
        yield origin


@pytest.fixture(scope="module")
def body_limited(
    tmp_path_factory: pytest.TempPathFactory, proxy_cert_dir: Path, small_body: RecordingOrigin
) -> Iterator[ProxyProcess]:
    extra = "\n[limits]\nmax_body_size = 1000\n"
    with proxy_in_front(
        small_body.port, tmp_path_factory.mktemp("body"), cert_dir=proxy_cert_dir, extra=extra
    ) as proxy:
        yield proxy


@pytest.mark.parametrize("version", ["1.1", "2"])
@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_max_body_size_is_413_and_never_completes_upstream(
    version: str,
    chunked: bool,
    body_limited: ProxyProcess,
    small_body: RecordingOrigin,
    tmp_path: Path,
) -> None:
    path = f"/upload-{version}-{int(chunked)}"
    url = f"https://localhost:{body_limited.port}{path}"
    headers = [("transfer-encoding", "chunked")] if chunked and version == "1.1" else []
    response = curl_request(
        version, url, tmp_path, method="POST", data=b"x" * 5000, headers=headers
    )
    assert response.status == 413
    time.sleep(0.2)
    assert not any(r.target == path.encode() for r in small_body.requests)
    if not chunked:  # declared too large: not even the head went upstream
        assert not any(h.target == path.encode() for h in small_body.heads)
    ok = curl_request(version, url + "-small", tmp_path, method="POST", data=b"y" * 1000)
    assert ok.status == 200


def test_an_h3_body_over_max_body_size_is_413(
    body_limited: ProxyProcess, small_body: RecordingOrigin
) -> None:
    big, small = aioquic_requests(
        body_limited.port,
        [
            H3Request("/h3-big", "POST", body=b"x" * 5000),
            H3Request("/h3-small", "POST", body=b"y" * 999),
        ],
    )
    assert big.status == 413
    assert small.status == 200
    assert not any(r.target == b"/h3-big" for r in small_body.requests)


# --- slow clients ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as origin:
        yield origin


@pytest.fixture(scope="module")
def impatient(
    tmp_path_factory: pytest.TempPathFactory, proxy_cert_dir: Path, slow_origin: RecordingOrigin
) -> Iterator[ProxyProcess]:
    extra = (
        "\n[limits]\nheader_timeout = 1.0\nidle_timeout = 1.5\nclient_body_timeout = 1.0\n"
        "request_timeout = 2.5\n"
    )
    with proxy_in_front(
        slow_origin.port, tmp_path_factory.mktemp("slow"), cert_dir=proxy_cert_dir, extra=extra
    ) as proxy:
        yield proxy


def test_slowloris_connections_are_cut_at_the_header_timeout(
    impatient: ProxyProcess, slow_origin: RecordingOrigin, tmp_path: Path
) -> None:
    head = b"GET /slowloris HTTP/1.1\r\nhost: localhost\r\nx-pad: " + b"a" * 200
    rss_before = impatient.rss_kib()
    clients = [tls_socket(impatient.port) for _ in range(20)]
    started = time.monotonic()
    closed_at: dict[int, float] = {}
    answers: dict[int, bytes] = {i: b"" for i in range(len(clients))}
    normal_took = None
    for offset in range(len(head)):  # one byte per connection every 20 ms
        if time.monotonic() - started > 4 or len(closed_at) == len(clients):
            break
        for index, sock in enumerate(clients):
            if index in closed_at:
                continue
            try:
                sock.sendall(head[offset : offset + 1])
                sock.settimeout(0.001)
                chunk = sock.recv(4096)
                answers[index] += chunk
                if not chunk:
                    closed_at[index] = time.monotonic() - started
            except (TimeoutError, ssl.SSLWantReadError):
                pass
            except (OSError, ssl.SSLError):
                closed_at[index] = time.monotonic() - started
        if normal_took is None and time.monotonic() - started > 0.5:
            t0 = time.monotonic()
            url = f"https://localhost:{impatient.port}/during-slowloris"
            assert curl_request("1.1", url, tmp_path).status == 200
            normal_took = time.monotonic() - t0
        time.sleep(0.02)
    for sock in clients:
        sock.close()
    assert len(closed_at) == len(clients), f"still open: {len(clients) - len(closed_at)}"
    assert max(closed_at.values()) < 2.5
    assert sum(b" 408 " in answer for answer in answers.values()) >= len(clients) // 2
    assert normal_took is not None and normal_took < 1.0
    assert not any(r.target == b"/slowloris" for r in slow_origin.heads)
    growth = (impatient.rss_kib() - rss_before) / 1024
    print(
        f"slowloris: 20 connections cut after {max(closed_at.values()):.2f} s at most; "
        f"a normal request meanwhile took {normal_took:.3f} s; RSS {growth:+.1f} MiB"
    )
    assert growth < 150


def test_a_silent_connection_is_closed_at_the_header_timeout(impatient: ProxyProcess) -> None:
    sock = tls_socket(impatient.port)
    started = time.monotonic()
    assert _read_all(sock, limit=5) == b""
    assert 0.8 < time.monotonic() - started < 2.5
    sock.close()


def test_keep_alive_idle_connection_is_closed(impatient: ProxyProcess) -> None:
    sock = tls_socket(impatient.port)
    sock.sendall(b"GET /keepalive HTTP/1.1\r\nhost: localhost\r\n\r\n")
    started = time.monotonic()
    data = _read_all(sock, limit=6)
    assert data.startswith(b"HTTP/1.1 200")
    assert 1.0 < time.monotonic() - started < 4.0  # the idle timeout, not the read limit
    sock.close()


def test_a_stalled_body_is_408_and_never_completes_upstream(
    impatient: ProxyProcess, slow_origin: RecordingOrigin
) -> None:
    sock = tls_socket(impatient.port)
    sock.sendall(
        b"POST /stalled HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n" + b"x" * 10
    )
    started = time.monotonic()
    data = _read_all(sock, limit=6)
    assert data.startswith(b"HTTP/1.1 408"), data[:100]
    assert time.monotonic() - started < 3.0
    assert not any(r.target == b"/stalled" for r in slow_origin.requests)
    sock.close()


def test_a_trickled_body_is_408_at_the_request_timeout(
    impatient: ProxyProcess, slow_origin: RecordingOrigin
) -> None:
    sock = tls_socket(impatient.port)
    sock.sendall(b"POST /trickle HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n")
    started = time.monotonic()
    data = b""
    for _ in range(40):  # a byte every 0.3 s beats the 1 s body timeout, not the 2.5 s total
        try:
            sock.sendall(b"x")
        except OSError:
            break
        data += _read_all(sock, limit=0.3)
        if data:
            break
    data += _read_all(sock, limit=2)
    assert data.startswith(b"HTTP/1.1 408"), data[:100]
    assert 2.0 < time.monotonic() - started < 4.5
    assert not any(r.target == b"/trickle" for r in slow_origin.requests)
    sock.close()


# --- the client goes away: the upstream request stops ----------------------------------------


@pytest.fixture(scope="module")
def hung() -> Iterator[RecordingOrigin]:
    with RecordingOrigin("hang") as origin:
        yield origin


@pytest.fixture(scope="module")
def hung_proxy(
    tmp_path_factory: pytest.TempPathFactory, proxy_cert_dir: Path, hung: RecordingOrigin
) -> Iterator[ProxyProcess]:
    with proxy_in_front(
        hung.port, tmp_path_factory.mktemp("hung"), cert_dir=proxy_cert_dir
    ) as proxy:
        yield proxy


def _upstream_closed_soon(origin: RecordingOrigin, before: int) -> bool:
    return origin.wait_for(lambda: len(origin.heads) > before, 3) and origin.wait_for(
        lambda: origin.open_connections() == 0, 2.0
    )


def test_h2_client_reset_closes_the_upstream_request(
    hung_proxy: ProxyProcess, hung: RecordingOrigin
) -> None:
    before = len(hung.heads)
    client = H2Client(hung_proxy.port)
    try:
        stream_id = client.request("GET", "/reset-me")
        assert hung.wait_for(lambda: len(hung.heads) > before, 3)
        client.conn.reset_stream(stream_id)
        client.flush()
        assert _upstream_closed_soon(hung, before)
    finally:
        client.close()


def test_h1_client_leaving_closes_the_upstream_request(
    hung_proxy: ProxyProcess, hung: RecordingOrigin
) -> None:
    before = len(hung.heads)
    sock = tls_socket(hung_proxy.port)
    sock.sendall(b"GET /leave HTTP/1.1\r\nhost: localhost\r\n\r\n")
    assert hung.wait_for(lambda: len(hung.heads) > before, 3)
    sock.close()
    assert _upstream_closed_soon(hung, before)


def test_h3_client_reset_closes_the_upstream_request(
    hung_proxy: ProxyProcess, hung: RecordingOrigin
) -> None:
    import asyncio

    from aioquic.asyncio.client import connect
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.quic.configuration import QuicConfiguration

    before = len(hung.heads)

    async def reset_after_head() -> bool:
        config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
        config.verify_mode = ssl.CERT_NONE
        config.server_name = "localhost"
        async with connect("127.0.0.1", hung_proxy.port, configuration=config) as client:
            quic = client._quic
            h3 = H3Connection(quic)
            stream_id = quic.get_next_available_stream_id()
            authority = f"localhost:{hung_proxy.port}".encode()
            fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority)]
            h3.send_headers(stream_id, [*fields, (b":path", b"/h3-reset")], end_stream=True)
            client.transmit()
            for _ in range(150):  # the request reaches the hung origin within 3 s
                if len(hung.heads) > before:
                    break
                await asyncio.sleep(0.02)
            quic.reset_stream(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
            quic.stop_stream(stream_id, 0x10C)
            client.transmit()
            for _ in range(100):  # the QUIC connection stays open meanwhile
                if hung.open_connections() == 0:
                    return True
                await asyncio.sleep(0.02)
        return False

    assert asyncio.run(asyncio.wait_for(reset_after_head(), 10))
    assert len(hung.heads) > before


def test_pipelined_bytes_behind_a_slow_request_wait_in_the_kernel(
    hung_proxy: ProxyProcess, hung: RecordingOrigin
) -> None:
    before = len(hung.heads)
    rss_before = hung_proxy.rss_kib()
    sock = tls_socket(hung_proxy.port)
    sock.sendall(b"GET /pipelined-slow HTTP/1.1\r\nhost: localhost\r\n\r\n")
    assert hung.wait_for(lambda: len(hung.heads) > before, 3)
    junk = b"GET /next HTTP/1.1\r\nhost: localhost\r\n\r\n" * 2000  # about 80 KB a write
    sent = 0
    sock.settimeout(2.0)
    try:
        for _ in range(1000):  # 80 MB at most
            sock.sendall(junk)
            sent += len(junk)
    except (TimeoutError, ssl.SSLError, OSError):
        pass
    finally:
        sock.close()
    assert sent < 40 * 1024 * 1024  # the proxy stopped reading
    assert (hung_proxy.rss_kib() - rss_before) / 1024 < 40
