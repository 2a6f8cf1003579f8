"""engine recovery: lost stream ranges are always sent again by the server's QUIC connections.

A real aioquic client (with a session-ticket handler, so the server sends a NewSessionTicket as
browsers and ngtcp2 make it do) talks to a ``QuicRouter`` in memory, with a fake clock and the
datagrams to drop chosen by the test.
"""

from __future__ import annotations

from typing import Any

import pytest
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted

from protocols.events import Event, RequestHeaders
from protocols.messages import ResponseHead
from protocols.quic import QuicServerConnection
from protocols.quic_router import QuicRouter

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost")]
GET += [(b":path", b"/")]
ONE_WAY = 0.015  # fake seconds a datagram takes, each way


class Download:
    """One GET over a lossy in-memory path; the server answers with ``body``."""

    def __init__(self, harness: Any, config: QuicConfiguration, body: bytes) -> None:
        self.harness = harness
        self.body = body
        self.now = 1.0
        self.router = QuicRouter(config)
        self.tickets: list[Any] = []
        self.client = QuicConnection(
            configuration=harness.client_config("h3"), session_ticket_handler=self.tickets.append
        )
        self.client.connect(harness.SERVER_ADDR, now=self.now)
        self.h3 = H3Connection(self.client)
        self.conn: QuicServerConnection | None = None
        self.stream_id: int | None = None
        self.headers: list[HeadersReceived] = []
        self.received = bytearray()
        self.ended = False
        self.terminated = False
        self.answered = False

    def client_to_server(self, deliver: bool = True) -> None:
        for data, _ in self.client.datagrams_to_send(self.now):
            if not deliver:
                continue
            result = self.router.receive_datagram(data, self.harness.CLIENT_ADDR, self.now)
            if result.connection is not None:
                self.conn = result.connection
            self._serve(result.events)

    def server_to_client(self, deliver: int | None = None) -> int:
        """Send what the server has queued; only the first ``deliver`` datagrams arrive."""
        if self.conn is None:
            return 0
        datagrams = self.conn.datagrams_to_send(self.now)
        self._serve(self.conn.pending_events())
        for data, _ in datagrams[:deliver]:
            self.client.receive_datagram(data, self.harness.SERVER_ADDR, self.now)
        self._drain_client()
        return len(datagrams)

    def wait_for_timer(self) -> None:
        """Advance the clock to the earlier timer of the two ends and run it."""
        assert self.conn is not None
        timers = [t for t in (self.client.get_timer(), self.conn.timer()) if t is not None]
        self.now = max(self.now, min(timers)) + 1e-6
        client_timer = self.client.get_timer()
        if client_timer is not None and client_timer <= self.now:
            self.client.handle_timer(self.now)
            self._drain_client()
        server_timer = self.conn.timer()
        if server_timer is not None and server_timer <= self.now:
            self._serve(self.conn.handle_timer(self.now))

    def _serve(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, RequestHeaders) and self.conn is not None:
                adapter = self.conn.adapter
                assert adapter is not None
                length = str(len(self.body)).encode()
                head = ResponseHead(200, [(b"content-length", length), (b"etag", b'"v1"')])
                adapter.send_response(event.stream_id, head)
                adapter.send_data(event.stream_id, self.body)
                adapter.end_stream(event.stream_id)  # FIN in a frame of its own, as streamio does
                self.answered = True

    def _drain_client(self) -> None:
        while (event := self.client.next_event()) is not None:
            if isinstance(event, ConnectionTerminated):
                self.terminated = True
            if isinstance(event, HandshakeCompleted) and self.stream_id is None:
                # The request leaves with the client's Finished, as real clients send it.
                self.stream_id = self.client.get_next_available_stream_id()
                self.h3.send_headers(self.stream_id, GET, end_stream=True)
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, HeadersReceived):
                    self.headers.append(h3_event)
                elif isinstance(h3_event, DataReceived):
                    self.received += h3_event.data
                    self.ended = self.ended or h3_event.stream_ended


@pytest.fixture
def config(server_config: QuicConfiguration) -> QuicConfiguration:
    server_config.max_datagram_size = 1350  # the listener's default
    return server_config


@pytest.mark.parametrize("size", [1024, 3000])
def test_response_tail_lost_with_the_acks_is_retransmitted_by_probes(
    harness: Any, config: QuicConfiguration, size: int
) -> None:
    """The issue's failure: the first 1-RTT packet (HANDSHAKE_DONE, the session ticket's CRYPTO
    and the response's first bytes) arrives, the packets with the rest of the response are lost,
    and so are the client's ACKs. Only probe timeouts can repair that; each must send data the
    client lacks, not the same first packet again."""
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    link = Download(harness, config, body)
    for _ in range(10):  # the handshake; the request goes with the client's Finished
        link.client_to_server()
        if link.answered:
            link.server_to_client(deliver=1)  # the rest of the response flight is lost
            break
        link.server_to_client()
        link.now += ONE_WAY
    assert link.answered and link.tickets, "the server answered and sent a session ticket"
    assert link.headers and 0 < len(link.received) < size, "only the first packet arrived"

    for _ in range(50):  # each round: a timer, then every client datagram is lost
        if link.ended or link.terminated or link.now - 1.0 > 15.0:
            break
        link.wait_for_timer()
        link.client_to_server(deliver=False)
        link.server_to_client()
    assert link.ended and bytes(link.received) == body, (
        f"the client got {len(link.received)} of {size} bytes by t={link.now - 1:.1f}s"
    )
    assert link.now - 1.0 < 10.0  # a few probe timeouts, far below any idle timeout
