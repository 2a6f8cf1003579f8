"""In-memory connection drivers for unit tests: the real TcpDriver, its bytes going to a REAL
peer state machine (h11 or h2's H2Connection) instead of a socket.

``MemoryWire`` stands in for ``net.tcp.ByteStream`` (write, close, set_reading, extra, alpn):
what the driver writes is fed to the peer at once, and what the peer queues in reply reaches the
driver on the next event-loop iteration, as bytes from a socket would. No sockets, no mocks: the
adapter, the driver, StreamIO and the peer are all the real code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h11

from quicproxy.errors import ErrorSource
from quicproxy.streamio import StreamIO
from quicproxy.tcpdriver import TcpDriver

__all__ = ["H2Peer", "H11Peer", "MemoryDriver", "MemoryWire", "settle", "wait_until"]


class H11Peer:
    """An h11 connection (CLIENT facing a server-role adapter, SERVER facing a client-role one)
    that records every event it parsed."""

    def __init__(self, role: type[h11.CLIENT] | type[h11.SERVER]) -> None:
        self.conn = h11.Connection(role)
        self.events: list[Any] = []
        self.received = bytearray()

    def receive(self, data: bytes) -> None:
        self.received += data
        self.conn.receive_data(data)
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            self.events.append(event)
            if isinstance(event, h11.ConnectionClosed):
                return

    def data_to_send(self) -> bytes:
        return b""  # h11 answers nothing on its own

    def send(self, *events: Any) -> bytes:
        """The bytes of ``events``, for ``MemoryWire.send``."""
        return b"".join(self.conn.send(event) or b"" for event in events)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def body(self) -> bytes:
        return b"".join(bytes(event.data) for event in self.of(h11.Data))


class H2Peer:
    """An h2 ``H2Connection`` (client side facing a server-role adapter, server side facing a
    client-role one) that records every event. It never acknowledges received DATA by itself:
    the test grants window with ``ack``."""

    def __init__(self, *, client_side: bool) -> None:
        config = h2.config.H2Configuration(client_side=client_side, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []

    def receive(self, data: bytes) -> None:
        self.events.extend(self.conn.receive_data(data))

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def body(self, stream_id: int) -> bytes:
        data = self.of(h2.events.DataReceived)
        return b"".join(event.data for event in data if event.stream_id == stream_id)

    def ack(self, stream_id: int) -> None:
        """Acknowledge every DATA byte received on ``stream_id`` (WINDOW_UPDATE frames)."""
        for event in self.of(h2.events.DataReceived):
            if event.stream_id == stream_id and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                event.flow_controlled_length = 0


class MemoryWire:
    """The driver's byte stream: a peer state machine on the other end."""

    alpn: str | None = None

    def __init__(self, peer: H11Peer | H2Peer) -> None:
        self.peer = peer
        self.driver: TcpDriver[Any] | None = None
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.reading = True
        self.reading_changes: list[bool] = []

    def write(self, data: bytes) -> None:
        if data and not self.closed:
            self.peer.receive(data)
            self.flush_peer()

    def flush_peer(self) -> None:
        """Deliver what the peer queued (h2 SETTINGS ACKs, WINDOW_UPDATE...) next iteration."""
        reply = self.peer.data_to_send()
        if reply:
            self.loop.call_soon(self.send, reply)

    def send(self, data: bytes) -> None:
        """Bytes from the peer reach the driver now."""
        if self.driver is not None and not self.closed:
            self.driver.data_received(data)

    def close(self) -> None:
        self.closed = True

    def set_reading(self, enabled: bool) -> None:
        if enabled != self.reading:
            self.reading_changes.append(enabled)
        self.reading = enabled

    def extra(self, name: str) -> Any:
        return None


class MemoryDriver(TcpDriver[Any]):
    """A TcpDriver over a ``MemoryWire``; server-role requests are collected in ``accepted``."""

    def __init__(
        self,
        peer: H11Peer | H2Peer,
        adapter: Any,
        *,
        peer_side: ErrorSource = ErrorSource.DOWNSTREAM,
        write_timeout: float = 5.0,
        stream_buffer: int = 256 * 1024,
    ) -> None:
        self.wire = MemoryWire(peer)
        super().__init__(
            self.wire,  # type: ignore[arg-type]
            adapter,
            peer_side=peer_side,
            write_timeout=write_timeout,
            idle_timeout=60.0,
            stream_buffer=stream_buffer,
        )
        self.wire.driver = self
        self.peer = peer
        self.accepted: list[tuple[StreamIO[Any], Any, bool]] = []
        self.flush()  # an h2 adapter's preface and SETTINGS

    def on_request(self, stream: StreamIO[Any], head: Any, end_stream: bool) -> None:
        self.accepted.append((stream, head, end_stream))

    def shutdown(self) -> None:
        """Drop the connection (cancels the idle timer)."""
        self.connection_lost(None)


async def settle(rounds: int = 20) -> None:
    """Let call_soon deliveries and scheduled flushes run (bounded)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def wait_until(check: Callable[[], bool], within: float = 2.0) -> None:
    """Poll ``check`` every millisecond until true; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)
