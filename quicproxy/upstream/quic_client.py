"""HTTP/3 upstream connections: aioquic's client over a UDP socket, driven like every other peer."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.tls import SessionTicket

from protocols.base import ClientQuicAdapter
from protocols.engines.aioquic import EcnQuicConnection
from protocols.events import CapacityAvailable, Event
from protocols.h3 import H3ClientAdapter, connection_closed

from ..errors import ErrorKind, ErrorSource, ProxyError
from ..net.deadline import DeadlineTimer
from ..net.udp import Address, UdpEndpoint, open_udp_endpoint
from ..streamio import ConnectionDriver
from .connection import PooledConnection
from .contexts import alpn_for
from .limits import UpstreamLimits
from .peer import HttpPeer, PeerKey
from .peer_cache import PeerCache

__all__ = ["H3UpstreamConnection", "QuicResumption", "client_quic"]


class QuicResumption:
    """What one connection leaves for the next to the same peer key: the session ticket (it
    resumes, and may send 0-RTT) and the NEW_TOKEN token (it skips a Retry)."""

    def __init__(self, limit: int = 1024) -> None:
        self.tickets: PeerCache[SessionTicket] = PeerCache(limit)
        self.tokens: PeerCache[bytes] = PeerCache(limit)


def client_quic(
    peer: HttpPeer, limits: UpstreamLimits, resumption: QuicResumption
) -> EcnQuicConnection:
    """A QUIC client connection to ``peer``, not yet started: it offers the session ticket and
    token stored under the peer's key and stores the ones it receives there (so a verified
    peer never resumes from an unverified peer's ticket)."""
    key = peer.key()
    return EcnQuicConnection(
        configuration=_configuration(peer, key, limits, resumption),
        session_ticket_handler=lambda ticket: resumption.tickets.store(key, ticket),
        token_handler=lambda token: resumption.tokens.store(key, token),
        stream_window=limits.stream_buffer,
    )


def _configuration(
    peer: HttpPeer, key: PeerKey, limits: UpstreamLimits, resumption: QuicResumption
) -> QuicConfiguration:
    configuration = QuicConfiguration(
        session_ticket=resumption.tickets.get(key),
        token=resumption.tokens.get(key) or b"",
        is_client=True,
        alpn_protocols=alpn_for(peer),
        server_name=peer.sni or peer.host,
        verify_mode=ssl.CERT_REQUIRED if peer.verify else ssl.CERT_NONE,
        max_datagram_size=limits.quic_max_datagram_size,
        idle_timeout=peer.timeouts.idle,
    )
    if peer.ca_file is not None:
        configuration.load_verify_locations(cafile=str(peer.ca_file))
    if peer.client_cert is not None:
        configuration.load_cert_chain(
            str(peer.client_cert), peer.client_key and str(peer.client_key)
        )
    return configuration


class H3UpstreamConnection(ConnectionDriver[ClientQuicAdapter]):
    """One QUIC connection to an upstream; streams are multiplexed like HTTP/2's."""

    multiplexed = True

    def __init__(
        self,
        peer: HttpPeer,
        quic: EcnQuicConnection,
        endpoint: UdpEndpoint,
        addr: Address,
        stream_buffer: int,
    ) -> None:
        super().__init__(
            H3ClientAdapter(quic, stream_buffer=stream_buffer),
            peer_side=ErrorSource.UPSTREAM,
            write_timeout=peer.timeouts.write,
            stream_buffer=stream_buffer,
        )
        self.peer = peer
        self.quic = quic
        self.endpoint = endpoint
        self.addr = addr
        self.alpn = "h3"
        self.last_activity = self.loop.time()
        self.on_gone: Callable[[PooledConnection], None] | None = None
        self.handshake: asyncio.Future[None] = self.loop.create_future()
        self.timer = DeadlineTimer(self.loop, self._on_timer)
        self._gone = False

    @classmethod
    async def connect(
        cls, peer: HttpPeer, limits: UpstreamLimits, resumption: QuicResumption
    ) -> H3UpstreamConnection:
        """Handshake within the peer's connect timeout; failures are ProxyErrors. Use
        ``Connector.connect``, which owns ``limits`` and ``resumption``."""
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
                quic = client_quic(peer, limits, resumption)
                conn = cls(peer, quic, endpoint, addr, limits.stream_buffer)
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
