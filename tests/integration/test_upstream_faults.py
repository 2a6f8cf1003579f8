"""Upstream faults, on h1, h2 and h3 clients: a refused, hung, malformed or truncating origin,
and clients that abort an upload or a download. Each test checks what the client saw and what
the origin (a RecordingOrigin) received or noticed."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

from tests.support.procs import CURL, ProxyProcess, run_proxy, write_config
from tests.support.rawclients import H2Client, tls_socket
from tests.support.recording import OriginRequest, RecordingOrigin

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

VERSIONS = ["1.1", "2", "3"]
BIG = 32 << 20  # a download far larger than every buffer on the way


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answer(raw: bytes) -> Callable[[OriginRequest], bytes]:
    return lambda request: raw


def _slow_ok(request: OriginRequest) -> bytes:
    time.sleep(1.2)
    body = b"got %d bytes" % len(request.body)
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def _big(request: OriginRequest) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % BIG + bytes(BIG)


MALFORMED = {
    "bad-status": b"HTTP/1.1 2OO OK\r\ncontent-length: 2\r\n\r\nok",
    "bad-cl": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!",
    "bad-clte": (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    "bad-cr": b"HTTP/1.1 200 OK\r\nx-bad: a\rb\r\ncontent-length: 2\r\n\r\nok",
}
PROMISE = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
CUT = {
    "cut-cl": PROMISE + b"content-length: 1000\r\n\r\n" + b"x" * 10,
    "cut-chunked": PROMISE + b"transfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n",
}


@dataclass
class Faults:
    proxy: ProxyProcess
    origins: dict[str, RecordingOrigin]


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, proxy_cert_dir: Path) -> Iterator[Faults]:
    """One proxy; each path prefix /NAME goes to the origin ``NAME`` (all on loopback)."""
    origins = {
        "ok": RecordingOrigin(),
        "hang": RecordingOrigin("hang"),
        "slow": RecordingOrigin(responder=_slow_ok),
        "stall": RecordingOrigin(responder=_answer(CUT["cut-cl"])),  # 10 of 1000, then silence
        "big": RecordingOrigin(responder=_big),
        "upload": RecordingOrigin(),
        **{name: RecordingOrigin(responder=_answer(raw)) for name, raw in MALFORMED.items()},
        **{name: RecordingOrigin("raw", raw_response=raw) for name, raw in CUT.items()},
    }
    timeouts = {"hang": 1, "stall": 1, "slow": 2}
    extra = ""
    ports = {name: origin.port for name, origin in origins.items()} | {"refused": _closed_port()}
    for name, port in ports.items():
        extra += f'\n[[upstream]]\nname = "{name}"\naddresses = ["http://127.0.0.1:{port}"]\n'
        extra += f"read_timeout = {timeouts.get(name, 5)}\n"
        extra += f'\n[[route]]\nupstream = "{name}"\npath_prefix = "/{name}"\n'
    tmp = tmp_path_factory.mktemp("faults")
    config = write_config(tmp / "p.toml", origins["ok"].port, extra=extra, cert_dir=proxy_cert_dir)
    for origin in origins.values():
        origin.__enter__()
    try:
        with run_proxy(["run", "-c", str(config)]) as proxy:
            yield Faults(proxy, origins)
            assert "Traceback" not in proxy.log_text()
    finally:
        for origin in origins.values():
            origin.__exit__()


# --- clients -------------------------------------------------------------------------------


@dataclass
class Got:
    """What a client saw: status (0: none), body bytes, and how the response ended: "end"
    (complete), "reset" (h2/h3 stream reset), "closed" (h1 connection closed short) or
    "error: ..." (anything else)."""

    status: int
    body: bytes
    ended: str
    elapsed: float


_CURL_ENDINGS = {0: "end", 18: "closed", 92: "reset"}  # partial file, HTTP/2 stream error


def fetch(version: str, port: int, path: str, *, data: bytes | None = None) -> Got:
    """One request with curl (h1, h2) or aioquic (h3)."""
    if version == "3":
        return asyncio.run(asyncio.wait_for(_h3_fetch(port, path, data), 20))
    args = ["--http1.1" if version == "1.1" else "--http2", "-o", "-", "-w", "\n%{http_code}"]
    if data is not None:
        args += ["--data-binary", "@-"]
    url = f"https://127.0.0.1:{port}{path}"
    started = time.monotonic()
    assert CURL is not None
    result = subprocess.run(
        [CURL, "-sS", "-k", "--noproxy", "*", "--max-time", "15", *args, url],
        input=data or b"",
        capture_output=True,
        timeout=25,
    )
    body, _, code = result.stdout.rpartition(b"\n")
    ended = _CURL_ENDINGS.get(result.returncode, f"error: curl exit {result.returncode}")
    return Got(int(code or 0), body, ended, time.monotonic() - started)


class _Recorder(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: asyncio.Queue[QuicEvent] = asyncio.Queue()

    def quic_event_received(self, event: QuicEvent) -> None:
        self.events.put_nowait(event)


async def _h3_fetch(port: int, path: str, data: bytes | None) -> Got:
    """aioquic's HTTP/3 client; tells a FIN from a RESET_STREAM."""
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
    config.server_name = "localhost"
    started = time.monotonic()
    async with connect("127.0.0.1", port, configuration=config, create_protocol=_Recorder) as c:
        assert isinstance(c, _Recorder)
        h3 = H3Connection(c._quic)
        stream_id = c._quic.get_next_available_stream_id()
        head = [(b":method", b"POST" if data else b"GET"), (b":scheme", b"https")]
        head += [(b":authority", f"localhost:{port}".encode()), (b":path", path.encode())]
        h3.send_headers(stream_id, head, end_stream=not data)
        if data:
            h3.send_data(stream_id, data, end_stream=True)
        c.transmit()
        status, body, ended = 0, bytearray(), ""
        while not ended:
            event = await c.events.get()
            if isinstance(event, StreamReset) and event.stream_id == stream_id:
                ended = "reset"
            elif isinstance(event, ConnectionTerminated):
                ended = f"error: {event.reason_phrase}"
            for h3_event in h3.handle_event(event):
                if isinstance(h3_event, HeadersReceived) and not status:
                    status = int(dict(h3_event.headers)[b":status"])
                elif isinstance(h3_event, DataReceived):
                    body += h3_event.data
                if isinstance(h3_event, HeadersReceived | DataReceived) and h3_event.stream_ended:
                    ended = "end"
    return Got(status, bytes(body), ended, time.monotonic() - started)


def _closed_soon(origin: RecordingOrigin, limit: float = 2.5) -> bool:
    return origin.wait_for(lambda: origin.open_connections() == 0, limit)


# --- refused, hung -------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_refused_upstream_is_a_fast_502(faults: Faults, version: str) -> None:
    got = fetch(version, faults.proxy.port, f"/refused/h{version}")
    assert (got.status, got.ended) == (502, "end")
    assert got.body.startswith(b"502 Bad Gateway")
    assert got.elapsed < 1.0, f"502 took {got.elapsed:.2f}s"
    retries = [line for line in faults.proxy.lines if f"/refused/h{version} in" in line]
    assert len(retries) <= 2, retries  # max_retries, with backoff: no storm


@pytest.mark.parametrize("version", VERSIONS)
def test_hung_upstream_is_504_at_the_read_timeout_and_its_connection_closed(
    faults: Faults, version: str
) -> None:
    hang = faults.origins["hang"]
    before = (len(hang.connections), len(hang.requests))
    got = fetch(version, faults.proxy.port, f"/hang/h{version}")
    assert (got.status, got.ended) == (504, "end")
    assert got.body.startswith(b"504 Gateway Timeout")
    assert 0.9 <= got.elapsed < 3, f"504 after {got.elapsed:.2f}s with read_timeout = 1"
    assert (len(hang.connections), len(hang.requests)) == (before[0] + 1, before[1] + 1)
    assert _closed_soon(hang, 1.0), "the proxy kept the hung upstream connection open"


def test_read_timeout_counts_from_the_end_of_a_slow_upload(faults: Faults) -> None:
    """The body trickles in for 1.5 s, the origin answers 1.2 s after it got the whole body:
    within read_timeout = 2 of the request's end, so a 200 (not a 504 at 2 s)."""
    sock = tls_socket(faults.proxy.port, "http/1.1")
    try:
        sock.sendall(b"POST /slow/up HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\n")
        for _ in range(10):
            time.sleep(0.15)
            sock.sendall(b"x")
        sock.settimeout(6)
        answer = b""
        while b"\r\n\r\n" not in answer:  # the status line and head are enough
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


# --- malformed or ambiguous responses ------------------------------------------------------


@pytest.mark.parametrize("version", ["1.1", "2"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_response_is_502_and_its_connection_is_not_reused(
    faults: Faults, case: str, version: str
) -> None:
    origin = faults.origins[case]
    before = len(origin.connections)
    for _ in range(2):
        got = fetch(version, faults.proxy.port, f"/{case}/h{version}")
        assert (got.status, got.ended) == (502, "end"), got
        assert got.body.startswith(b"502 Bad Gateway")
    assert _closed_soon(origin), "the proxy kept the connection of a malformed response"
    assert len(origin.connections) == before + 2  # the second request had a connection of its own


# --- cut short -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", [*sorted(CUT), "stall"])
def test_truncated_response_is_never_a_clean_end(faults: Faults, case: str, version: str) -> None:
    """Closed mid-body, closed mid-chunked, or 10 of 1000 bytes then silence (read_timeout 1):
    an h1 client sees its connection closed, an h2/h3 client its stream reset (when the whole
    truncated response arrived at once, the reset may overtake the head: status 0)."""
    got = fetch(version, faults.proxy.port, f"/{case}/h{version}")
    assert got.ended == ("closed" if version == "1.1" else "reset"), got
    if version == "1.1" or case == "stall":
        assert got.status == 200
        assert got.body == (b"0123456789" if case == "cut-chunked" else b"x" * 10)
    assert got.status in (0, 200) and len(got.body) <= 10
    assert got.elapsed < 5
    after = fetch(version, faults.proxy.port, "/ok/after")
    assert (after.status, after.ended, after.body) == (200, "end", b"ok /ok/after")


# --- the client gives up -------------------------------------------------------------------


def _upload_aborted(origin: RecordingOrigin, before: tuple[int, int, int]) -> None:
    """The head reached the origin, the request never completed there, and the proxy closed
    the upstream connection."""
    assert origin.wait_for(lambda: len(origin.heads) > before[0], 3)
    assert _closed_soon(origin), "the upstream request went on after the client left"
    assert len(origin.requests) == before[1]
    assert len(origin.raw) - before[2] < 1_000_000


def _upload_state(origin: RecordingOrigin) -> tuple[int, int, int]:
    return len(origin.heads), len(origin.requests), len(origin.raw)


@pytest.mark.parametrize("how", ["reset", "close"])
def test_h2_client_aborting_an_upload_aborts_the_upstream_request(faults: Faults, how: str) -> None:
    origin = faults.origins["upload"]
    before = _upload_state(origin)
    client = H2Client(faults.proxy.port)
    try:
        stream_id = client.request("POST", "/upload/h2", [("content-length", "1000000")], False)
        for _ in range(4):
            client.conn.send_data(stream_id, bytes(15000))
        client.flush()
        assert origin.wait_for(lambda: len(origin.raw) > before[2] + 50000, 3)
        if how == "reset":
            client.conn.reset_stream(stream_id)
            client.flush()
        else:
            client.close()
        _upload_aborted(origin, before)
    finally:
        client.close()


def test_h1_client_aborting_an_upload_aborts_the_upstream_request(faults: Faults) -> None:
    origin = faults.origins["upload"]
    before = _upload_state(origin)
    sock = tls_socket(faults.proxy.port, "http/1.1")
    try:
        sock.sendall(
            b"POST /upload/h1 HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000000\r\n\r\n"
        )
        sock.sendall(bytes(100000))
        assert origin.wait_for(lambda: len(origin.raw) > before[2] + 90000, 3)
    finally:
        sock.close()
    _upload_aborted(origin, before)


def test_h2_client_aborting_a_download_stops_the_upstream_read(faults: Faults) -> None:
    origin = faults.origins["big"]
    before = len(origin.connections)
    client = H2Client(faults.proxy.port)
    try:
        stream_id = client.request("GET", "/big/h2", [], True)
        assert client.receive(60000) >= 60000
        assert origin.open_connections() == 1
        client.conn.reset_stream(stream_id)
        client.flush()
        started = time.monotonic()
        assert _closed_soon(origin), "the proxy went on reading the abandoned download"
        assert time.monotonic() - started < 2.5
    finally:
        client.close()
    assert len(origin.connections) == before + 1


def test_h1_client_aborting_a_download_stops_the_upstream_read(faults: Faults) -> None:
    origin = faults.origins["big"]
    sock = tls_socket(faults.proxy.port, "http/1.1")
    try:
        sock.sendall(b"GET /big/h1 HTTP/1.1\r\nhost: localhost\r\n\r\n")
        got = 0
        while got < 200000:
            chunk = sock.recv(65536)
            assert chunk
            got += len(chunk)
        assert origin.open_connections() == 1
    finally:
        sock.close()
    assert _closed_soon(origin), "the proxy went on reading the abandoned download"
