"""HTTP/1.1 smuggling and limits against the real proxy: each malformed request gets its status
and a closed connection, and nothing of it reaches the origin (a RecordingOrigin).

Raw sockets to a cleartext listener (``tls = false``), one case over TLS; after each refusal a
normal request on a new connection still works.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import ProxyProcess, proxy_in_front, run_proxy, write_config
from tests.support.rawclients import tls_socket
from tests.support.recording import RecordingOrigin

POST = b"POST /smuggle HTTP/1.1\r\nHost: localhost\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"


@dataclass
class Edge:
    proxy: ProxyProcess
    origin: RecordingOrigin


def _cleartext_config(path: Path, origin_port: int, cert_dir: Path) -> Path:
    config = write_config(path, origin_port, cert_dir=cert_dir)
    text = config.read_text().replace(
        'address = "127.0.0.1:0"', 'address = "127.0.0.1:0"\ntls = false', 1
    )
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, proxy_cert_dir: Path) -> Iterator[Edge]:
    """A cleartext HTTP/1.1 listener in front of a recording origin."""
    with RecordingOrigin() as origin:
        path = tmp_path_factory.mktemp("h1-edge") / "proxy.toml"
        config = _cleartext_config(path, origin.port, proxy_cert_dir)
        with run_proxy(["run", "-c", str(config)]) as proxy:
            yield Edge(proxy, origin)


@dataclass
class Reply:
    data: bytes
    closed: bool  # the proxy closed the connection (EOF or reset)

    @property
    def status(self) -> int:
        return int(self.data[9:12]) if self.data.startswith(b"HTTP/1.1 ") else 0


def _connect(port: int, tls: bool) -> socket.socket:
    if tls:
        return tls_socket(port)
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def exchange(port: int, *parts: bytes, pause: float = 0.0, tls: bool = False) -> Reply:
    """Send ``parts`` (``pause`` seconds apart), then read until the proxy closes (5 s at most)."""
    sock = _connect(port, tls)
    data = b""
    closed = False
    try:
        for index, part in enumerate(parts):
            if index and pause:
                time.sleep(pause)
            try:
                sock.sendall(part)
            except OSError:
                break  # the proxy refused and closed before we were done
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        sock.close()
    return Reply(data, closed)


def assert_nothing_reached_the_origin(origin: RecordingOrigin, raw_before: int) -> None:
    time.sleep(0.2)  # anything the proxy had sent would have arrived by now
    assert origin.raw[raw_before:] == b""


def assert_still_serving(edge: Edge, tls: bool = False) -> None:
    reply = exchange(
        edge.proxy.port,
        b"GET /after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        tls=tls,
    )
    assert reply.status == 200, reply.data[:200]
    assert reply.data.endswith(b"ok /after")


SMUGGLING = {
    "cl-then-te": (POST + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "te-then-cl": (POST + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
    "tab-te": (POST + b"Content-Length: 4\r\n\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "space-colon": (POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    "obs-fold": (POST + b"X-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "bare-lf": (b"POST /smuggle HTTP/1.1\nHost: localhost\nContent-Length: 0\n\n", 400),
    "bare-lf-field": (POST + b"Content-Length: 0\nX: 1\r\n\r\n", 400),
    "cl-list": (POST + b"Content-Length: 4, 5\r\n\r\nabcd", 400),
    "cl-sign": (POST + b"Content-Length: +4\r\n\r\nabcd", 400),
    "te-gzip": (POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "te-twice": (POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    "nul-value": (POST + b"X-A: a\x00b\r\nContent-Length: 0\r\n\r\n", 400),
    "two-hosts": (POST + b"Host: other\r\nContent-Length: 0\r\n\r\n", 400),
    "no-host": (b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    "absolute-other-host": (b"GET http://other/ HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
    "version": (b"GET / HTTP/1.2\r\nHost: localhost\r\n\r\n", 505),
    "chunk-0x": (CHUNKED + b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", 400),
    "chunk-negative": (CHUNKED + b"-1\r\n" + b"\r\n0\r\n\r\n", 400),
    "chunk-overflow": (CHUNKED + b"1" + b"0" * 16 + b"\r\na\r\n0\r\n\r\n", 400),
    "chunk-ext-bare-lf": (CHUNKED + b"4;ext=1\nabcd\r\n0\r\n\r\n", 400),
    "chunk-no-crlf": (CHUNKED + b"4\r\nabcdXX0\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
def test_smuggling_is_refused_and_reaches_nothing(edge: Edge, case: str) -> None:
    raw, status = SMUGGLING[case]
    before = len(edge.origin.raw)
    reply = exchange(edge.proxy.port, raw + SMUGGLED)
    assert reply.status == status, reply.data[:300]
    assert b"connection: close" in reply.data.lower()
    assert reply.closed
    assert reply.data.count(b"HTTP/1.1 ") == 1  # the smuggled request was not answered
    assert_nothing_reached_the_origin(edge.origin, before)
    assert_still_serving(edge)


def test_the_refusal_is_logged_with_its_rule(edge: Edge) -> None:
    raw, _ = SMUGGLING["cl-then-te"]
    exchange(edge.proxy.port, raw)
    deadline = time.monotonic() + 5
    while "content-length with transfer-encoding" not in edge.proxy.log_text():
        assert time.monotonic() < deadline, edge.proxy.log_text()[-2000:]
        time.sleep(0.05)


@pytest.mark.parametrize(
    "chunks",
    [b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", b"4\r\nabcdXX0\r\n\r\n", b"-1\r\n\r\n0\r\n\r\n"],
)
def test_a_bad_chunk_arriving_later_aborts_the_forwarded_request(edge: Edge, chunks: bytes) -> None:
    requests_before = len(edge.origin.requests)
    reply = exchange(edge.proxy.port, CHUNKED + b"3\r\nabc\r\n", chunks + SMUGGLED, pause=0.5)
    assert reply.status == 400, reply.data[:300]
    assert reply.closed
    assert reply.data.count(b"HTTP/1.1 ") == 1
    time.sleep(0.2)
    assert edge.origin.requests[requests_before:] == []  # no complete request reached it
    assert edge.origin.wait_for(lambda: edge.origin.open_connections() == 0)
    assert_still_serving(edge)


def test_a_64_kib_field_is_431(edge: Edge) -> None:
    before = len(edge.origin.raw)
    head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    reply = exchange(edge.proxy.port, head)
    assert reply.status == 431, reply.data[:300]
    assert reply.closed
    assert_nothing_reached_the_origin(edge.origin, before)
    assert_still_serving(edge)


def test_5000_fields_are_431(edge: Edge) -> None:
    before = len(edge.origin.raw)
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(5000))
    reply = exchange(edge.proxy.port, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + fields + b"\r\n")
    assert reply.status == 431, reply.data[:300]
    assert reply.closed
    assert_nothing_reached_the_origin(edge.origin, before)
    assert_still_serving(edge)


def test_a_long_request_line_is_414(edge: Edge) -> None:
    before = len(edge.origin.raw)
    reply = exchange(
        edge.proxy.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert reply.status == 414, reply.data[:300]
    assert reply.closed
    assert_nothing_reached_the_origin(edge.origin, before)
    assert_still_serving(edge)


def test_valid_chunked_upload_with_extensions_and_trailers_still_works(edge: Edge) -> None:
    requests_before = len(edge.origin.requests)
    body = b"4;name=value\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Sum: 7\r\n\r\n"
    reply = exchange(
        edge.proxy.port, POST + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body
    )
    assert reply.status == 200, reply.data[:300]
    assert reply.data.endswith(b"ok /smuggle")
    assert [r.body for r in edge.origin.requests[requests_before:]] == [b"abcdefg"]


def test_pipelined_requests_are_answered_in_order(edge: Edge) -> None:
    first = b"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n"
    second = b"GET /two HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    reply = exchange(edge.proxy.port, first + second)
    assert reply.data.count(b"HTTP/1.1 200 ") == 2, reply.data
    assert reply.data.index(b"ok /one") < reply.data.index(b"ok /two")


def test_over_tls_too(tmp_path: Path, proxy_cert_dir: Path) -> None:
    with (
        RecordingOrigin() as origin,
        proxy_in_front(origin.port, tmp_path, cert_dir=proxy_cert_dir) as proxy,
    ):
        raw, _ = SMUGGLING["te-then-cl"]
        reply = exchange(proxy.port, raw + SMUGGLED, tls=True)
        assert reply.status == 400, reply.data[:300]
        assert reply.closed
        assert_nothing_reached_the_origin(origin, 0)
        reply = exchange(
            proxy.port, CHUNKED + b"2\r\nab\r\n", b"zz\r\n0\r\n\r\n", pause=0.5, tls=True
        )
        assert reply.status == 400, reply.data[:300]
        assert origin.requests == []
        assert_still_serving(Edge(proxy, origin), tls=True)
