"""One client QUIC connection of the interop client: UDP I/O, timers, downloads to files.

``ClientConnection`` drives an aioquic ``QuicConnection`` on a ``quicproxy.net.udp`` endpoint
(datagrams in, events drained, datagrams out in one batch per loop iteration, the loss/idle timer
on ``loop.call_at``). Requests go out through ``HqRequests`` (hq-interop: ``GET /path\\r\\n``, the
reply is the raw file) or ``H3Requests`` (HTTP/3 GETs), never more at once than the server's
stream credit allows.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import SessionTicket

from protocols.engines.aioquic import EcnQuicConnection, connection_version, peer_bidi_stream_credit
from quicproxy.net.deadline import DeadlineTimer
from quicproxy.net.udp import Address, UdpEndpoint, open_udp_endpoint

__all__ = ["ClientConnection", "ClientError", "Download", "H3Requests", "HqRequests"]

MAX_ACTIVE = 256  # requests in flight at once (also bounds the open files)
KEEPALIVE = 0.5  # seconds without any server packet before a PING while downloads are pending
H3_NO_ERROR = 0x100


class ClientError(Exception):
    """A failure worth a one-line reason on stderr (exit status 1)."""


@dataclass
class Download:
    """One requested file, written to ``target`` as its bytes arrive."""

    path: str  # the request target, e.g. "/file.bin"
    target: Path
    status: int | None = None  # h3 only
    received: int = 0
    done: bool = False
    error: str | None = None
    _file: BinaryIO | None = field(default=None, repr=False)

    def write(self, data: bytes) -> None:
        """Append a chunk of the body."""
        if self._file is None:
            self._file = self.target.open("wb")
        self._file.write(data)
        self.received += len(data)

    def finish(self) -> None:
        """The body is complete (an empty one still creates the file)."""
        if self._file is None:
            self._file = self.target.open("wb")
        self._file.close()
        if self.status not in (None, 200):
            self.error = f"{self.path}: status {self.status}"
        self.done = True

    def fail(self, reason: str) -> None:
        """Give up on this file."""
        if self._file is not None:
            self._file.close()
        self.error = f"{self.path}: {reason}"
        self.done = True


class HqRequests:
    """hq-interop (HTTP/0.9): one bidirectional stream per GET, the raw body comes back."""

    close_code = 0  # NO_ERROR

    def __init__(self, quic: QuicConnection) -> None:
        self.quic = quic
        self.streams: dict[int, Download] = {}

    def credit(self) -> int:
        """New streams the server lets us open now."""
        return peer_bidi_stream_credit(self.quic)

    def start(self, download: Download) -> None:
        """Send ``GET /path`` and FIN on a new stream."""
        stream_id = self.quic.get_next_available_stream_id()
        self.quic.send_stream_data(stream_id, f"GET {download.path}\r\n".encode(), end_stream=True)
        self.streams[stream_id] = download

    def handle(self, event: qe.QuicEvent) -> None:
        """Feed one QUIC event."""
        if isinstance(event, qe.StreamDataReceived):
            download = self.streams.get(event.stream_id)
            if download is None:
                return
            if event.data:
                download.write(event.data)
            if event.end_stream:
                del self.streams[event.stream_id]
                download.finish()
        elif isinstance(event, qe.StreamReset) and event.stream_id in self.streams:
            self.streams.pop(event.stream_id).fail(f"stream reset ({event.error_code:#x})")


class H3Requests:
    """HTTP/3 GETs over aioquic's H3Connection (a second, independent h3 client next to the
    proxy's own ``H3ClientAdapter``)."""

    close_code = H3_NO_ERROR

    def __init__(self, quic: QuicConnection, authority: str) -> None:
        self.quic = quic
        self.h3 = H3Connection(quic)
        self.authority = authority.encode()
        self.streams: dict[int, Download] = {}

    def credit(self) -> int:
        """New streams the server lets us open now."""
        return peer_bidi_stream_credit(self.quic)

    def start(self, download: Download) -> None:
        """Send a GET request head with FIN on a new stream."""
        stream_id = self.quic.get_next_available_stream_id()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", self.authority),
            (b":path", download.path.encode()),
        ]
        self.h3.send_headers(stream_id, headers, end_stream=True)
        self.streams[stream_id] = download

    def handle(self, event: qe.QuicEvent) -> None:
        """Feed one QUIC event."""
        if isinstance(event, qe.StreamReset) and event.stream_id in self.streams:
            self.streams.pop(event.stream_id).fail(f"stream reset ({event.error_code:#x})")
            return
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived | DataReceived):
                self._on_event(h3_event)

    def _on_event(self, event: HeadersReceived | DataReceived) -> None:
        download = self.streams.get(event.stream_id)
        if download is None or event.push_id is not None:
            return
        if isinstance(event, DataReceived):
            download.write(event.data)
        elif download.status is None:
            status = dict(event.headers).get(b":status", b"0")
            download.status = int(status) if status.isdigit() else 0
            if 100 <= download.status < 200:
                download.status = None  # an interim response: the final one follows
        if event.stream_ended:
            self.streams.pop(event.stream_id).finish()


Requests = HqRequests | H3Requests


async def resolve(host: str, port: int) -> Address:
    """The first UDP address of ``host`` (IPv4 or IPv6)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ClientError(f"cannot resolve {host}: {exc}") from None
    return tuple(infos[0][4])


class ClientConnection:
    """One QUIC connection to the server and the requests on it."""

    def __init__(self, configuration: QuicConfiguration, addr: Address, authority: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.addr = addr
        self.ticket: SessionTicket | None = None
        self.quic = EcnQuicConnection(
            configuration=configuration, session_ticket_handler=self._store_ticket
        )
        alpn = (configuration.alpn_protocols or ["hq-interop"])[0]
        self.requests: Requests = (
            H3Requests(self.quic, authority) if alpn == "h3" else HqRequests(self.quic)
        )
        self.handshake: qe.HandshakeCompleted | None = None
        self.on_handshake: Callable[[], None] | None = None
        self.closed: qe.ConnectionTerminated | None = None
        self.endpoint: UdpEndpoint | None = None
        self._wake = asyncio.Event()
        self._flush_pending = False
        self.timer = DeadlineTimer(self.loop, self._on_timer)
        self._pings = 0

    @classmethod
    async def open(
        cls,
        configuration: QuicConfiguration,
        host: str,
        port: int,
        authority: str,
        *,
        ecn: bool = False,
    ) -> ClientConnection:
        """Bind a UDP socket of the server's family and start the handshake.

        The first flight leaves on the next loop iteration, so requests started right after
        ``open`` returns (0-RTT) share it.
        """
        addr = await resolve(host, port)
        local = "::" if ":" in addr[0] else "0.0.0.0"
        conn = cls(configuration, addr, authority)
        try:
            conn.endpoint = await open_udp_endpoint(local, 0, conn.datagram_received, ecn=ecn)
        except OSError as exc:
            raise ClientError(f"cannot open a UDP socket on {local}: {exc}") from None
        conn.quic.connect(addr, now=conn.loop.time())
        conn.schedule_flush()
        return conn

    def _store_ticket(self, ticket: SessionTicket) -> None:
        self.ticket = ticket
        self._wake.set()

    def datagram_received(self, data: bytes, addr: Address, ecn: int = 0) -> None:
        """Feed one datagram from the server (``ecn``: its IP header's ECN bits)."""
        self.quic.receive_datagram(data, addr, self.loop.time(), ecn)
        self._drain()
        self.schedule_flush()

    def _drain(self) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, qe.HandshakeCompleted):
                self.handshake = event
                if self.on_handshake is not None:
                    self.on_handshake()
            elif isinstance(event, qe.ConnectionTerminated):
                self.closed = event
            self.requests.handle(event)
        self._wake.set()

    def schedule_flush(self) -> None:
        """Send what is queued once this loop iteration's datagrams are all processed."""
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send queued datagrams and re-arm the timer."""
        self._flush_pending = False
        if self.endpoint is None:
            return
        datagrams = self.quic.datagrams_to_send(now=self.loop.time())
        if datagrams:
            self.endpoint.send(datagrams)
        self.timer.rearm(self.quic.get_timer())

    def _on_timer(self) -> None:
        self.quic.handle_timer(now=self.loop.time())
        self._drain()
        self.flush()

    def _check_alive(self) -> None:
        if self.closed is not None:
            event = self.closed
            reason = event.reason_phrase or "no reason"
            raise ClientError(f"connection closed ({event.error_code:#x}: {reason})")

    async def wait_until(self, ready: Callable[[], bool], seconds: float, what: str) -> None:
        """Wait (at most ``seconds``) until ``ready()``; fail if the connection ends."""
        try:
            async with asyncio.timeout(seconds):
                while not ready():
                    self._check_alive()
                    self._wake.clear()
                    await self._wake.wait()
        except TimeoutError:
            raise ClientError(f"{what} timed out after {seconds:g}s") from None

    async def fetch(self, downloads: list[Download]) -> None:
        """Download every file, keeping within the stream credit; raise on the first failure.

        Before the handshake completes (0-RTT) the credit comes from the resumed session.
        """
        queue = deque(downloads)
        active: list[Download] = []
        while queue or active:
            self._check_alive()
            budget = min(self.requests.credit(), MAX_ACTIVE - len(active))
            while queue and budget > 0:
                download = queue.popleft()
                self.requests.start(download)
                active.append(download)
                budget -= 1
            self.schedule_flush()
            for download in active:
                if download.error is not None:
                    raise ClientError(download.error)
            active = [download for download in active if not download.done]
            if queue or active:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), KEEPALIVE)
                except TimeoutError:
                    self._keepalive()

    def _keepalive(self) -> None:
        """Downloads pending and nothing heard for a while: send a PING. After a NAT rebinding
        the server's packets go to our old address and nothing of ours is in flight, so
        without it both sides would wait for the idle timeout."""
        self._pings += 1
        self.quic.send_ping(self._pings)
        self.schedule_flush()

    async def close(self, linger: float = 5.0) -> None:
        """CONNECTION_CLOSE with NO_ERROR, then release the socket once aioquic's closing period
        (three PTOs, at most ``linger`` seconds) ends: late server packets get the close again,
        and the qlog is written only then."""
        if self.closed is None:
            self.quic.close(error_code=self.requests.close_code)
            self.flush()
            try:
                async with asyncio.timeout(linger):
                    while self.closed is None:
                        self._wake.clear()
                        await self._wake.wait()
            except TimeoutError:
                pass
        self.timer.cancel()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    def handshake_done(self) -> bool:
        """True once the TLS handshake completed."""
        return self.handshake is not None

    def has_ticket(self) -> bool:
        """True once the server sent a session ticket."""
        return self.ticket is not None

    def version(self) -> int | None:
        """The QUIC version in use."""
        return connection_version(self.quic)

    def cipher(self) -> str:
        """The TLS cipher suite's name, once negotiated."""
        schedule = self.quic.tls.key_schedule if self.handshake else None
        return schedule.cipher_suite.name if schedule else "?"

    def resumed(self) -> bool:
        """True when TLS resumed a session."""
        return bool(self.handshake is not None and self.handshake.session_resumed)
