"""HTTP/3 upstream connections: aioquic's client over a UDP socket, driven like every other peer."""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import Callable
from typing import Generic, TypeVar

from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.tls import SessionTicket

from protocols.events import CapacityAvailable, Event
from protocols.h3 import H3ClientAdapter, connection_closed
from protocols.quic_ecn import EcnQuicConnection

from ..errors import ErrorKind, ErrorSource, ProxyError
from ..net.deadline import DeadlineTimer
from ..net.udp import Address, UdpEndpoint, open_udp_endpoint
from ..streamio import ConnectionDriver
from .peer import HttpPeer, PeerKey

__all__ = ["H3UpstreamConnection", "PeerCache"]

T = TypeVar("T")

STREAM_BUFFER = 256 * 1024


class PeerCache(Generic[T]):
    """The latest value per upstream (a session ticket, an address-validation token), bounded."""

    def __init__(self, limit: int = 1024) -> None:
        self._values: collections.OrderedDict[PeerKey, T] = collections.OrderedDict()
        self.limit = limit

    def get(self, key: PeerKey) -> T | None:
        return self._values.get(key)

    def store(self, key: PeerKey, value: T) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self.limit:
            self._values.popitem(last=False)


TICKETS: PeerCache[SessionTicket] = PeerCache()  # the next connection resumes (and may use 0-RTT)
TOKENS: PeerCache[bytes] = PeerCache()  # NEW_TOKEN: the next connection skips a Retry


def _configuration(peer: HttpPeer, key: PeerKey) -> QuicConfiguration:
    configuration = QuicConfiguration(
        session_ticket=TICKETS.get(key),
        token=TOKENS.get(key) or b"",
        is_client=True,
        alpn_protocols=["h3"],
        server_name=peer.sni or peer.host,
        verify_mode=ssl.CERT_REQUIRED if peer.verify else ssl.CERT_NONE,
        max_datagram_size=1350,
        idle_timeout=peer.timeouts.idle,
    )
    if peer.ca_file is not None:
        configuration.load_verify_locations(cafile=str(peer.ca_file))
    if peer.client_cert is not None:
        configuration.load_cert_chain(
            str(peer.client_cert), peer.client_key and str(peer.client_key)
        )
    return configuration


class H3UpstreamConnection(ConnectionDriver):
    """One QUIC connection to an upstream; streams are multiplexed like HTTP/2's."""

    multiplexed = True

    def __init__(
        self, peer: HttpPeer, quic: EcnQuicConnection, endpoint: UdpEndpoint, addr: Address
    ) -> None:
        super().__init__(
            H3ClientAdapter(quic, stream_buffer=STREAM_BUFFER),
            peer_side=ErrorSource.UPSTREAM,
            write_timeout=peer.timeouts.write,
            stream_buffer=STREAM_BUFFER,
        )
        self.peer = peer
        self.quic = quic
        self.endpoint = endpoint
        self.addr = addr
        self.alpn = "h3"
        self.last_activity = self.loop.time()
        self.on_gone: Callable[[H3UpstreamConnection], None] | None = None
        self.handshake: asyncio.Future[None] = self.loop.create_future()
        self.timer = DeadlineTimer(self.loop, self._on_timer)
        self._gone = False

    @classmethod
    async def connect(cls, peer: HttpPeer) -> H3UpstreamConnection:
        """Handshake within the peer's connect timeout; failures are ProxyErrors."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(peer.timeouts.connect):
                infos = await loop.getaddrinfo(peer.host, peer.port, type=socket.SOCK_DGRAM)
                addr: Address = tuple(infos[0][4])
                local = "::" if infos[0][0] == socket.AF_INET6 else "0.0.0.0"
                holder: list[H3UpstreamConnection] = []
                endpoint = await open_udp_endpoint(
                    local,
                    0,
                    lambda data, source, ecn: holder[0].datagram_received(data, source, ecn),
                )
                key = peer.key()  # never resume a verified peer from an unverified ticket
                quic = EcnQuicConnection(
                    configuration=_configuration(peer, key),
                    session_ticket_handler=lambda ticket: TICKETS.store(key, ticket),
                    token_handler=lambda token: TOKENS.store(key, token),
                    stream_window=STREAM_BUFFER,
                )
                conn = cls(peer, quic, endpoint, addr)
                holder.append(conn)
                quic.connect(addr, now=loop.time())
                conn.flush()
                await conn.handshake
        except TimeoutError:
            raise ProxyError.upstream(
                ErrorKind.CONNECT_TIMEOUT,
                f"QUIC handshake with {peer.address} timed out after {peer.timeouts.connect:g}s",
            ) from None
        except OSError as exc:
            raise ProxyError.upstream(
                ErrorKind.CONNECT_REFUSED, f"QUIC to {peer.address} failed: {exc}"
            ) from None
        return conn

    @property
    def reusable(self) -> bool:
        """True while another request may start on this connection."""
        return not self.closed and not self.going_away and self.adapter.available_streams() > 0

    def datagram_received(self, data: bytes, addr: Address, ecn: int = 0) -> None:
        """Feed one datagram from the upstream."""
        now = self.loop.time()
        self.last_activity = now
        self.quic.receive_datagram(data, addr, now, ecn)
        self._drain()
        self.schedule_flush()

    def _drain(self) -> None:
        events: list[Event] = []
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, qe.HandshakeCompleted):
                if not self.handshake.done():
                    self.handshake.set_result(None)
            elif isinstance(event, qe.ConnectionTerminated):
                self._terminated(event)
                return
            events.extend(self.adapter.handle_event(event))
        self.adapter.poll()
        events.append(CapacityAvailable(None))
        self.handle_events(events)

    def _terminated(self, event: qe.ConnectionTerminated) -> None:
        closed = connection_closed(event)
        if not self.handshake.done():
            self.handshake.set_exception(
                ProxyError.upstream(
                    ErrorKind.TLS_HANDSHAKE,
                    f"QUIC handshake with {self.peer.address} failed: {event.reason_phrase}",
                    retry=False,
                )
            )
        self.connection_failed(closed.message or "QUIC connection closed")
        self._forget()

    def flush(self) -> None:
        if self._gone:
            return
        now = self.loop.time()
        datagrams = self.quic.datagrams_to_send(now)
        if datagrams:
            self.endpoint.send(datagrams)
        self.timer.rearm(self.quic.get_timer())

    def _on_timer(self) -> None:
        self.quic.handle_timer(self.loop.time())
        self._drain()
        self.flush()

    def close_transport(self) -> None:
        """CONNECTION_CLOSE, then forget the socket."""
        if self._gone:
            return
        self.quic.close()
        self.flush()
        self.connection_failed("closed by the proxy")
        self._forget()

    def _forget(self) -> None:
        if self._gone:
            return
        self._gone = True
        self.timer.cancel()
        self.loop.call_later(0.05, self.endpoint.close)  # let CONNECTION_CLOSE leave first
        if self.on_gone is not None:
            self.on_gone(self)
