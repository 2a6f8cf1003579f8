"""HTTP/2 and HTTP/3 downgrade smuggling against the real proxy in front of a RecordingOrigin.

Each hostile request goes out on a fresh connection (h2 over TLS with h2's own checks off, or
h3 with aioquic's client encoder, which sends any field), followed by a normal request on the
SAME connection. The hostile stream must get 400 or a stream reset (the table below says which),
the origin must receive no request head for it (or, for the body cases, no complete request),
and the normal stream must still get 200.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.events as h2e
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection

from tests.support.procs import ProxyProcess, proxy_in_front
from tests.support.rawclients import tls_socket
from tests.support.recording import RecordingOrigin

Fields = list[tuple[bytes, bytes]]

H3_MESSAGE_ERROR = 0x10E
PAUSE = 0.4  # between the two DATA frames of a split body: the proxy forwards the first


@dataclass(frozen=True)
class Case:
    """One hostile request: its fields after the pseudo-headers, its body frames."""

    extra: Fields = field(default_factory=list)
    chunks: tuple[bytes, ...] = ()  # DATA frames; the last one carries END_STREAM
    pseudo: Fields | None = None  # replaces the pseudo-headers entirely
    pause: bool = False  # wait before the last DATA frame
    mid_body: bool = False  # found wrong in the body: h3 answers RESET_STREAM(H3_MESSAGE_ERROR)

    @property
    def body_case(self) -> bool:
        return bool(self.chunks)


def pseudo(path: bytes, method: bytes = b"GET") -> Fields:
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path),
    ]


def cl(*values: bytes) -> Fields:
    return [(b"content-length", v) for v in values]


CASES: dict[str, Case] = {
    # content-length against DATA: h2 400 (the response has not started), h3 stream reset
    "cl-larger-than-data": Case(cl(b"10"), (b"12345",), mid_body=True),
    "cl-smaller-than-data": Case(cl(b"5"), (b"1234567890",), mid_body=True),
    "cl-reached-then-more-data": Case(cl(b"5"), (b"12345", b"67890"), pause=True, mid_body=True),
    "cl-short-at-end": Case(cl(b"10"), (b"12345", b""), pause=True, mid_body=True),
    "cl-twice-differing": Case(cl(b"5", b"10"), (b"12345",)),
    "cl-signed": Case(cl(b"+5"), (b"12345",)),
    "cl-list": Case(cl(b"5, 5"), (b"12345",)),
    # connection-specific fields and TE
    "connection": Case([(b"connection", b"close")]),
    "keep-alive": Case([(b"keep-alive", b"timeout=5")]),
    "proxy-connection": Case([(b"proxy-connection", b"keep-alive")]),
    "transfer-encoding": Case([(b"transfer-encoding", b"chunked")]),
    "upgrade": Case([(b"upgrade", b"websocket")]),
    "te-gzip": Case([(b"te", b"gzip")]),
    # names and values
    "uppercase-name": Case([(b"X-Smuggle", b"1")]),
    "cr-in-name": Case([(b"x-a\rb", b"1")]),
    "lf-in-name": Case([(b"x-a\nb", b"1")]),
    "nul-in-name": Case([(b"x-a\x00b", b"1")]),
    "cr-in-value": Case([(b"x-a", b"1\rx")]),
    "lf-in-value": Case([(b"x-a", b"1\r\ntransfer-encoding: chunked")]),
    "nul-in-value": Case([(b"x-a", b"1\x00x")]),
    # :path and the pseudo-headers
    "path-empty": Case(pseudo=pseudo(b"")),
    "path-no-slash": Case(pseudo=pseudo(b"smuggle")),
    "path-space": Case(pseudo=pseudo(b"/a HTTP/1.1\r\nx: y")),
    "path-space-only": Case(pseudo=pseudo(b"/a b")),
    "path-ctl": Case(pseudo=pseudo(b"/a\tb")),
    "path-del": Case(pseudo=pseudo(b"/a\x7fb")),
    "missing-method": Case(pseudo=pseudo(b"/smuggle")[1:]),
    "missing-path": Case(pseudo=pseudo(b"/smuggle")[:3]),
    "duplicate-path": Case(pseudo=[*pseudo(b"/smuggle"), (b":path", b"/other")]),
    "duplicate-method": Case(pseudo=[(b":method", b"POST"), *pseudo(b"/smuggle")]),
    "pseudo-after-regular": Case(
        pseudo=[*pseudo(b"/smuggle")[:3], (b"x-a", b"1"), (b":path", b"/smuggle")]
    ),
    # -- :authority becomes the HTTP/1.1 Host upstream
    "authority-space": Case(
        pseudo=[*pseudo(b"/smuggle")[:2], (b":authority", b"a b"), (b":path", b"/smuggle")]
    ),
    "authority-userinfo": Case(
        pseudo=[*pseudo(b"/smuggle")[:2], (b":authority", b"user@evil"), (b":path", b"/smuggle")]
    ),
    "authority-slash": Case(
        pseudo=[*pseudo(b"/smuggle")[:2], (b":authority", b"a/b"), (b":path", b"/smuggle")]
    ),
}


def request_of(case: Case, path: bytes) -> Fields:
    if case.pseudo is not None:
        return [*case.pseudo, *case.extra]
    return [*pseudo(path, b"POST" if case.body_case else b"GET"), *case.extra]


@dataclass
class Outcome:
    """What the client saw on the hostile stream and on the normal one."""

    status: int | None = None
    reset: int | None = None
    neighbour: int | None = None

    @property
    def complete(self) -> bool:
        """Both streams have their answer."""
        return self.neighbour is not None and (self.status or self.reset) is not None


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as recording:
        yield recording


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory, origin: RecordingOrigin, proxy_cert_dir: Path
) -> Iterator[ProxyProcess]:
    with proxy_in_front(
        origin.port, tmp_path_factory.mktemp("smuggle"), cert_dir=proxy_cert_dir
    ) as running:
        yield running


# -- HTTP/2 --------------------------------------------------------------------------------


def h2_exchange(port: int, case: Case, path: bytes, neighbour: bytes) -> Outcome:
    sock = tls_socket(port, "h2")
    assert sock.selected_alpn_protocol() == "h2"
    conn = H2Connection(
        H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    )
    conn.initiate_connection()
    outcome = Outcome()

    def pump(until: float) -> None:
        sock.sendall(conn.data_to_send())
        while time.monotonic() < until and not outcome.complete:
            sock.settimeout(max(0.01, until - time.monotonic()))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                return
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2e.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                    if event.stream_id == 1:
                        outcome.status = status
                    else:
                        outcome.neighbour = status
                elif isinstance(event, h2e.StreamReset) and event.stream_id == 1:
                    outcome.reset = int(event.error_code)
            sock.sendall(conn.data_to_send())

    try:
        chunks = list(case.chunks)
        conn.send_headers(1, request_of(case, path), end_stream=not chunks)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            if last and case.pause:
                pump(time.monotonic() + PAUSE)
            conn.send_data(1, chunk, end_stream=last)
        pump(time.monotonic() + 0.2)
        conn.send_headers(3, pseudo(neighbour), end_stream=True)
        pump(time.monotonic() + 10)
    finally:
        sock.close()
    return outcome


# -- HTTP/3 --------------------------------------------------------------------------------


async def h3_exchange(port: int, case: Case, path: bytes, neighbour: bytes) -> Outcome:
    from aioquic.asyncio.client import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import QuicEvent, StreamReset

    outcome = Outcome()
    ids: dict[int, str] = {}

    class Client(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic)

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, StreamReset) and ids.get(event.stream_id) == "hostile":
                outcome.reset = event.error_code
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, HeadersReceived) and h3_event.stream_id in ids:
                    status = int(dict(h3_event.headers)[b":status"])
                    if ids[h3_event.stream_id] == "hostile":
                        outcome.status = status
                    else:
                        outcome.neighbour = status

    config = QuicConfiguration(
        is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE, server_name="localhost"
    )
    async with connect("127.0.0.1", port, configuration=config, create_protocol=Client) as client:
        assert isinstance(client, Client)
        quic, h3 = client._quic, client.h3
        hostile = quic.get_next_available_stream_id()
        ids[hostile] = "hostile"
        chunks = list(case.chunks)
        h3.send_headers(hostile, request_of(case, path), end_stream=not chunks)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            if last and case.pause:
                client.transmit()
                await asyncio.sleep(PAUSE)
            h3.send_data(hostile, chunk, end_stream=last)
        client.transmit()
        await asyncio.sleep(0.2)
        normal = quic.get_next_available_stream_id()
        ids[normal] = "normal"
        h3.send_headers(normal, pseudo(neighbour), end_stream=True)
        client.transmit()
        for _ in range(500):
            if outcome.complete:
                break
            await asyncio.sleep(0.01)
    return outcome


# -- the checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["h2", "h3"])
@pytest.mark.parametrize("name", list(CASES))
def test_smuggling_is_a_stream_error_that_never_reaches_the_origin(
    proxy: ProxyProcess, origin: RecordingOrigin, protocol: str, name: str
) -> None:
    case = CASES[name]
    path = f"/smuggle/{protocol}/{name}".encode()
    neighbour = f"/neighbour/{protocol}/{name}".encode()
    heads_before = len(origin.heads)
    if protocol == "h2":
        outcome = h2_exchange(proxy.port, case, path, neighbour)
    else:
        outcome = asyncio.run(asyncio.wait_for(h3_exchange(proxy.port, case, path, neighbour), 15))

    if protocol == "h3" and case.mid_body:
        assert (outcome.status, outcome.reset) == (None, H3_MESSAGE_ERROR), outcome
    else:
        assert outcome.status == 400, outcome
    assert outcome.neighbour == 200, outcome
    assert origin.wait_for(lambda: any(r.target == neighbour for r in origin.requests))
    time.sleep(0.3)  # a late hostile request would have time to show up
    assert not any(r.target == path for r in origin.requests)  # never a complete one
    new_heads = [h.target for h in origin.heads[heads_before:]]
    if case.mid_body:  # its head may have gone ahead, never the whole request
        assert set(new_heads) <= {path, neighbour}, new_heads
    else:
        assert new_heads == [neighbour], new_heads


@pytest.mark.parametrize("protocol", ["h2", "h3"])
def test_exact_body_whose_end_comes_late_reaches_the_origin_whole(
    proxy: ProxyProcess, origin: RecordingOrigin, protocol: str
) -> None:
    """The byte held back until END_STREAM confirms the length is released with the end."""
    case = Case(cl(b"5"), (b"12345", b""), pause=True)
    path = f"/exact/{protocol}".encode()
    neighbour = f"/neighbour/{protocol}/exact".encode()
    if protocol == "h2":
        outcome = h2_exchange(proxy.port, case, path, neighbour)
    else:
        outcome = asyncio.run(asyncio.wait_for(h3_exchange(proxy.port, case, path, neighbour), 15))
    assert (outcome.status, outcome.neighbour) == (200, 200), outcome
    assert [r.body for r in origin.requests if r.target == path] == [b"12345"]
