"""HTTP/2 and HTTP/3 floods against the real proxy in front of a RecordingOrigin.

Each flood must end with the proxy cutting the connection (GOAWAY ENHANCE_YOUR_CALM or
H3_EXCESSIVE_LOAD) or answering 431, the origin seeing (almost) nothing, a normal request on a
NEW connection answering within a second, and the proxy's RSS staying within 150 MiB of its
start. The figures are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h2.events as h2e
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.support.clients import peak_rss
from tests.support.procs import ProxyProcess, curl, proxy_in_front
from tests.support.rawclients import tls_socket
from tests.support.recording import RecordingOrigin

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"127.0.0.1"),
    (b":path", b"/flood"),
]
ENHANCE_YOUR_CALM = 0xB
EXCESSIVE_LOAD = 0x107
RSS_BUDGET_KIB = 150 * 1024


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as recording:
        yield recording


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory, origin: RecordingOrigin, proxy_cert_dir: Path
) -> Iterator[ProxyProcess]:
    with proxy_in_front(
        origin.port, tmp_path_factory.mktemp("h2h3"), cert_dir=proxy_cert_dir
    ) as running:
        yield running


def h2_connect(port: int) -> tuple[ssl.SSLSocket, H2Connection]:
    sock = tls_socket(port, "h2")
    assert sock.selected_alpn_protocol() == "h2"
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def h2_flood(port: int, payload: bytes) -> int | None:
    """Send ``payload`` (raw frames after the preface) as fast as possible; return the error
    code of the GOAWAY the proxy answered with (None: the connection closed without one)."""
    sock, conn = h2_connect(port)
    try:
        try:
            for offset in range(0, len(payload), 64 * 1024):
                sock.sendall(payload[offset : offset + 64 * 1024])
        except OSError:
            pass  # the proxy closed the connection mid-flood
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (OSError, ssl.SSLError):
                return None
            if not data:
                return None
            try:
                events = conn.receive_data(data)
            except Exception:  # h2 rejects what follows the GOAWAY: we have what we need
                return None
            for event in events:
                if isinstance(event, h2e.ConnectionTerminated):
                    return int(event.error_code)
        return None
    finally:
        sock.close()


def follow_up_seconds(port: int, *, http3: bool = False) -> float:
    """Time for a normal GET on a new connection (h2 with curl, or h3 with aioquic)."""
    started = time.monotonic()
    if http3:
        status = asyncio.run(asyncio.wait_for(h3_get(port), 10))
    else:
        result = curl(
            "--http2", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"https://127.0.0.1:{port}/ok"
        )
        status = int(result.stdout or b"0")
    elapsed = time.monotonic() - started
    assert status == 200
    return elapsed


def measured(
    name: str, proxy: ProxyProcess, origin: RecordingOrigin, run: Callable[[], Any], http3: bool
) -> tuple[Any, int]:
    """Run one flood; check and print the follow-up time and RSS growth; (result, requests
    the origin saw during it)."""
    before = len(origin.requests)
    with peak_rss(proxy.rss_kib) as rss:
        result = run()
    seen = len(origin.requests) - before
    seconds = follow_up_seconds(proxy.port, http3=http3)
    growth = rss[1] - rss[0]
    print(
        f"\n{name}: follow-up answered in {seconds * 1000:.0f} ms, RSS {rss[0] // 1024} MiB -> "
        f"peak {rss[1] // 1024} MiB (+{growth / 1024:.1f} MiB), origin saw {seen} requests"
    )
    assert seconds < 1.0
    assert growth < RSS_BUDGET_KIB
    return result, seen


def rapid_reset_frames(count: int) -> bytes:
    encoder, out = Encoder(), bytearray()
    for i in range(count):
        stream_id = 1 + 2 * i
        out += HeadersFrame(stream_id, encoder.encode(REQUEST), flags=["END_HEADERS"]).serialize()
        out += RstStreamFrame(stream_id, error_code=0x8).serialize()
    return bytes(out)


def test_h2_rapid_reset(proxy: ProxyProcess, origin: RecordingOrigin) -> None:
    payload = rapid_reset_frames(2000)
    code, seen = measured(
        "h2 rapid reset (2000 HEADERS+RST_STREAM)",
        proxy,
        origin,
        lambda: h2_flood(proxy.port, payload),
        http3=False,
    )
    assert code == ENHANCE_YOUR_CALM
    assert seen <= 110  # max_premature_resets = 100


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("PING", PingFrame(0, opaque_data=b"flooding")),
        ("SETTINGS", SettingsFrame(0, settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 100})),
    ],
)
def test_h2_control_frame_floods(
    proxy: ProxyProcess, origin: RecordingOrigin, name: str, frame: Any
) -> None:
    payload = bytes(frame.serialize()) * 100_000
    code, seen = measured(
        f"h2 {name} flood (100000 frames)",
        proxy,
        origin,
        lambda: h2_flood(proxy.port, payload),
        http3=False,
    )
    assert code == ENHANCE_YOUR_CALM
    assert seen == 0


def test_h2_continuation_flood(proxy: ProxyProcess, origin: RecordingOrigin) -> None:
    encoder = Encoder()
    start = HeadersFrame(1, encoder.encode(REQUEST), flags=["END_STREAM"]).serialize()
    piece = bytes(ContinuationFrame(1, b"\x00" * 16000).serialize())
    payload = bytes(start) + piece * 256  # 4 MB of one header block
    code, seen = measured(
        "h2 CONTINUATION flood (4 MB block)",
        proxy,
        origin,
        lambda: h2_flood(proxy.port, payload),
        http3=False,
    )
    assert code == ENHANCE_YOUR_CALM
    assert seen == 0


def h2_statuses(port: int, blocks: list[list[tuple[bytes, bytes]]]) -> list[int]:
    """Send each header block as its own stream on one connection; the statuses in order."""
    sock, conn = h2_connect(port)
    statuses: dict[int, int] = {}
    try:
        for i, block in enumerate(blocks):
            conn.send_headers(1 + 2 * i, block, end_stream=True)
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + 10
        while len(statuses) < len(blocks) and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2e.ResponseReceived):
                    statuses[event.stream_id] = int(dict(event.headers)[b":status"])
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return [statuses.get(1 + 2 * i, 0) for i in range(len(blocks))]


def test_h2_hpack_bomb(proxy: ProxyProcess, origin: RecordingOrigin) -> None:
    bomb = [*REQUEST[:3], (b":path", b"/bomb"), *[(b"x-bomb", b"b" * 4000)] * 40]
    normal = [*REQUEST[:3], (b":path", b"/after-bomb")]
    statuses, _ = measured(
        "h2 HPACK bomb (160 KB decoded, ~4 KB encoded)",
        proxy,
        origin,
        lambda: h2_statuses(proxy.port, [bomb, normal]),
        http3=False,
    )
    assert statuses == [431, 200]  # same connection: the next stream works
    paths = [r.target for r in origin.requests]
    assert b"/bomb" not in paths and b"/after-bomb" in paths


async def h3_session(port: int, scenario: Callable[[Any, Any, Any], Any]) -> Any:
    from aioquic.asyncio.client import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3Connection
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import ConnectionTerminated, QuicEvent

    class Client(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic)
            self.events: list[Any] = []
            self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, ConnectionTerminated) and not self.closed.done():
                self.closed.set_result(int(event.error_code))
            self.events.extend(self.h3.handle_event(event))

    config = QuicConfiguration(
        is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE, server_name="localhost"
    )
    async with connect("127.0.0.1", port, configuration=config, create_protocol=Client) as client:
        return await scenario(client, client._quic, client.h3)


async def h3_get(port: int) -> int:
    from aioquic.h3.events import HeadersReceived

    async def scenario(client: Any, quic: Any, h3: Any) -> int:
        stream_id = quic.get_next_available_stream_id()
        h3.send_headers(stream_id, [*REQUEST[:3], (b":path", b"/ok")], end_stream=True)
        client.transmit()
        for _ in range(200):
            for event in client.events:
                if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
                    return int(dict(event.headers)[b":status"])
            await asyncio.sleep(0.01)
        return 0

    return await h3_session(port, scenario)


async def h3_rapid_reset(port: int, count: int) -> int | None:
    async def scenario(client: Any, quic: Any, h3: Any) -> int | None:
        for i in range(count):
            if client.closed.done():
                break
            try:
                stream_id = quic.get_next_available_stream_id()
                h3.send_headers(stream_id, REQUEST, end_stream=True)
                client.transmit()  # the HEADERS go out before the reset
                quic.reset_stream(stream_id, 0x10C)
                quic.stop_stream(stream_id, 0x10C)
                client.transmit()
            except Exception:  # out of stream credit or closed: wait for the verdict
                break
            if i % 25 == 24:
                await asyncio.sleep(0.005)  # lets MAX_STREAMS arrive
        try:
            return await asyncio.wait_for(asyncio.shield(client.closed), 5)
        except TimeoutError:
            return None

    return await h3_session(port, scenario)


def test_h3_rapid_reset(proxy: ProxyProcess, origin: RecordingOrigin) -> None:
    code, seen = measured(
        "h3 rapid reset (RESET_STREAM + STOP_SENDING)",
        proxy,
        origin,
        lambda: asyncio.run(asyncio.wait_for(h3_rapid_reset(proxy.port, 2000), 30)),
        http3=True,
    )
    assert code == EXCESSIVE_LOAD
    assert seen <= 110


async def h3_bomb(port: int) -> list[int]:
    from aioquic.h3.events import HeadersReceived

    async def scenario(client: Any, quic: Any, h3: Any) -> list[int]:
        statuses: list[int] = []
        big = (b"x-bomb", b"b" * 1000)
        for path, fields in ((b"/warm", [big]), (b"/bomb", [big] * 2000), (b"/after", [big])):
            stream_id = quic.get_next_available_stream_id()
            h3.send_headers(stream_id, [*REQUEST[:3], (b":path", path), *fields], end_stream=True)
            client.transmit()
            status = 0
            for _ in range(300):
                for event in client.events:
                    if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
                        status = int(dict(event.headers)[b":status"])
                if status:
                    break
                await asyncio.sleep(0.01)
            statuses.append(status)
        return statuses

    return await h3_session(port, scenario)


def test_h3_qpack_bomb(proxy: ProxyProcess, origin: RecordingOrigin) -> None:
    statuses, _ = measured(
        "h3 QPACK bomb (2 MB decoded, ~2 KB encoded)",
        proxy,
        origin,
        lambda: asyncio.run(asyncio.wait_for(h3_bomb(proxy.port), 30)),
        http3=True,
    )
    assert statuses == [200, 431, 200]
    paths = [r.target for r in origin.requests]
    assert b"/bomb" not in paths and b"/after" in paths
