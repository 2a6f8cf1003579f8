"""Datagram demux for a QUIC server: header parse, version negotiation, Retry, CID -> connection.

Use from an I/O shell: ``result = router.receive_datagram(data, addr, now)``; send every
``result.replies`` datagram at once (version negotiation, Retry, INVALID_TOKEN close), hand
``result.events`` to ``result.connection``'s owner (``result.new``: the connection was just
created, start its timer), then flush ``result.connection.datagrams_to_send(now)``. Closed
connections are forgotten here automatically when a datagram reveals it; shells that see
``conn.closed`` after a timer call ``router.remove(conn)``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from aioquic import tls
from aioquic.buffer import Buffer
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import TRANSPORT_CLOSE_FRAME_CAPACITY
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicHeader,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder

from .engines.aioquic import ServerQuicConnection, packets_lost
from .engines.aioquic.hello import Certificate
from .events import Event
from .limits import DEFAULT_LIMITS, ConnectionLimits
from .quic import NetworkAddress, QuicServerConnection
from .quic_tokens import RETRY, TokenIssuer, reset_token, stateless_reset

__all__ = ["AddressValidation", "QuicRouter", "RouteResult"]

_MAX_TICKETS = 10_000
MAX_RESETS_PER_SECOND = 100
_MAX_RETIRED = 10_000  # connection IDs of live connections the clients retired


@dataclass(frozen=True, slots=True)
class RouteResult:
    """What one datagram did: the connection it reached, its events and immediate replies."""

    connection: QuicServerConnection | None
    events: list[Event] = field(default_factory=list)
    replies: list[tuple[bytes, NetworkAddress]] = field(default_factory=list)
    new: bool = False


_DROPPED = RouteResult(None)


def _initial_close(
    version: int,
    source_cid: bytes,
    destination_cid: bytes,
    error: int = QuicErrorCode.INVALID_TOKEN,
) -> bytes:
    """A server Initial closing the connection with ``error`` (INVALID_TOKEN: RFC 9000 section
    8.1.3; CONNECTION_REFUSED: section 10.2.3), smaller than the client Initial it answers."""
    crypto = CryptoPair()
    crypto.setup_initial(cid=source_cid, is_client=False, version=version)
    builder = QuicPacketBuilder(
        host_cid=source_cid,
        is_client=False,
        max_datagram_size=SMALLEST_MAX_DATAGRAM_SIZE,
        peer_cid=destination_cid,
        version=version,
    )
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    buf = builder.start_frame(
        QuicFrameType.TRANSPORT_CLOSE, capacity=TRANSPORT_CLOSE_FRAME_CAPACITY
    )
    buf.push_uint_var(error)
    buf.push_uint_var(QuicFrameType.PADDING)
    buf.push_uint_var(0)
    datagrams, _ = builder.flush()
    return datagrams[0]


@dataclass(frozen=True, slots=True)
class AddressValidation:
    """When to send Retry, and NEW_TOKEN tokens for returning clients (RFC 9000 section 8.1).

    ``retry``: ``"off"``, ``"always"`` (every client without a valid token) or ``"auto"`` (only
    while more than ``retry_threshold`` new connections per second arrive). A client with a
    valid token (from a Retry or a NEW_TOKEN frame) has a validated address from its first
    packet; others are held to the 3x anti-amplification limit until the handshake.
    """

    retry: str = "off"
    retry_threshold: int = 200
    new_token: bool = True
    token_lifetime: float = 86400.0


@dataclass(slots=True)
class QuicStats:
    """Plain counters of one router (sampled by the metrics agent, never per packet)."""

    handshakes: int = 0
    early_data_accepted: int = 0
    early_data_rejected: int = 0  # offered in the ClientHello, refused
    packets_lost_closed: int = 0  # lost packets of connections already removed


class QuicRouter:
    """Routes datagrams to QUIC server connections and creates new ones.

    ``limits`` gives each request stream's receive window and send budget (``stream_buffer``),
    the bidirectional stream credit and the h3 field and flood limits; ``connection_window``
    (default 16 stream windows) caps the unconsumed bytes per connection.
    Session tickets live in a bounded in-memory store; each is used once (0-RTT anti-replay).
    ``cid_factory`` makes the connection IDs the server issues (worker steering);
    ``preferred_address`` (IPv4, IPv6) is offered to clients for migration. A short-header
    packet for an unknown connection gets a stateless reset unless ``stateless_reset`` is off
    (turn it off where another process may own the connection: workers without steering).
    ``max_connections_per_source`` (0: no limit) caps the live connections of one client IP:
    beyond it a new connection's Initial is answered with CONNECTION_CLOSE(CONNECTION_REFUSED)
    in an Initial packet, and the count goes down as connections are removed.
    """

    def __init__(
        self,
        configuration: QuicConfiguration,
        *,
        validation: AddressValidation | None = None,
        retry: bool = False,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        max_connections: int = 10000,
        max_connections_per_source: int = 0,
        connection_window: int | None = None,
        qpack: tuple[int, int] = (4096, 16),
        cid_factory: Callable[[], bytes] | None = None,
        preferred_address: tuple[NetworkAddress | None, NetworkAddress | None] | None = None,
        stateless_reset: bool = True,
    ) -> None:
        self.configuration = configuration
        self.validation = validation or AddressValidation(retry="always" if retry else "off")
        self._tokens = TokenIssuer(lifetime=self.validation.token_lifetime)
        self._limits = limits
        self._connection_window = connection_window or 16 * limits.stream_buffer
        self._max_connections = max_connections
        self._max_per_source = max_connections_per_source
        self._source_of: dict[QuicServerConnection, str] = {}
        self._per_source: dict[str, int] = {}
        self.refused = 0  # Initials refused by the per-source cap
        self._qpack = qpack
        self._cid_factory = cid_factory
        self._preferred = preferred_address
        self._by_cid: dict[bytes, QuicServerConnection] = {}
        self._cids: dict[QuicServerConnection, set[bytes]] = {}
        self._tickets: OrderedDict[bytes, tls.SessionTicket] = OrderedDict()
        self._retired: OrderedDict[bytes, None] = OrderedDict()
        self._window_start = 0.0
        self._window_count = 0
        self.retries_sent = 0
        self._stateless_reset = stateless_reset
        self._reset_window = (0.0, 0)
        self.resets_sent = 0
        self.certificate_for: Callable[[str | None], Certificate] | None = None  # by SNI
        self.stats = QuicStats()

    def handshake_done(self, conn: QuicServerConnection) -> None:
        """Count a completed handshake (and its 0-RTT outcome); the frontend calls it once."""
        self.stats.handshakes += 1
        quic = conn.quic
        if getattr(quic, "early_data_offered", False):
            if conn.facts.early_data:
                self.stats.early_data_accepted += 1
            else:
                self.stats.early_data_rejected += 1

    def packets_lost(self) -> int:
        """Packets declared lost, on live and closed connections."""
        live = sum(packets_lost(conn.quic) for conn in self._cids)
        return self.stats.packets_lost_closed + live

    def connections(self) -> list[QuicServerConnection]:
        """Every live connection."""
        return list(self._cids)

    def remove(self, conn: QuicServerConnection) -> None:
        """Forget a connection and all its connection IDs."""
        if conn in self._cids:
            self.stats.packets_lost_closed += packets_lost(conn.quic)
        for cid in self._cids.pop(conn, set()):
            if self._by_cid.get(cid) is conn:
                del self._by_cid[cid]
        source = self._source_of.pop(conn, None)
        if source is not None:
            left = self._per_source[source] - 1
            if left:
                self._per_source[source] = left
            else:
                del self._per_source[source]

    def receive_datagram(
        self, data: bytes, addr: NetworkAddress, now: float, ecn: int = 0
    ) -> RouteResult:
        """Route one datagram (``ecn``: the ECN bits it arrived with; see the module docstring
        for what to do with the result)."""
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self.configuration.connection_id_length
            )
        except ValueError:
            return _DROPPED
        versions = self.configuration.supported_versions
        if (
            header.packet_type != QuicPacketType.VERSION_NEGOTIATION
            and header.version is not None
            and header.version not in versions
        ):
            if len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
                return _DROPPED  # too small to start a connection: no amplification
            reply = encode_quic_version_negotiation(
                source_cid=header.destination_cid,
                destination_cid=header.source_cid,
                supported_versions=versions,
            )
            return RouteResult(None, replies=[(reply, addr)])
        conn = self._by_cid.get(header.destination_cid)
        new = False
        if conn is None and header.packet_type == QuicPacketType.ONE_RTT:
            if header.destination_cid in self._retired:
                return _DROPPED  # the client retired it; packets may still be in flight
            return self._reset(header.destination_cid, len(data), addr, now)
        if conn is None:
            if (
                header.packet_type != QuicPacketType.INITIAL
                or len(data) < SMALLEST_MAX_DATAGRAM_SIZE
                or len(self._cids) >= self._max_connections
            ):
                return _DROPPED
            if 0 < self._max_per_source <= self._per_source.get(str(addr[0]), 0):
                return self._refuse(header, addr)
            created = self._accept(header, addr, now)
            if not isinstance(created, QuicServerConnection):
                return created
            conn, new = created, True
        events = conn.receive_datagram(data, addr, now, ecn)
        if conn.closed:
            self.remove(conn)
        return RouteResult(conn, events, [], new)

    def _refuse(self, header: QuicHeader, addr: NetworkAddress) -> RouteResult:
        """CONNECTION_REFUSED for a client IP at its connection cap (no state is kept)."""
        assert header.version is not None
        self.refused += 1
        close = _initial_close(
            header.version,
            header.destination_cid,
            header.source_cid,
            QuicErrorCode.CONNECTION_REFUSED,
        )
        return RouteResult(None, replies=[(close, addr)])

    def _reset(self, cid: bytes, size: int, addr: NetworkAddress, now: float) -> RouteResult:
        """A stateless reset for a short-header packet of a connection we do not know (at most
        ``MAX_RESETS_PER_SECOND``, so that nobody can make us a traffic source)."""
        if not self._stateless_reset:
            return _DROPPED
        start, count = self._reset_window
        if now - start >= 1.0:
            start, count = now, 0
        packet = stateless_reset(cid, size)
        if packet is None or count >= MAX_RESETS_PER_SECOND:
            return _DROPPED
        self._reset_window = (start, count + 1)
        self.resets_sent += 1
        return RouteResult(None, replies=[(packet, addr)])

    def _retry_wanted(self, now: float) -> bool:
        mode = self.validation.retry
        if mode == "always":
            return True
        if mode != "auto":
            return False
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        return self._window_count > self.validation.retry_threshold

    def _accept(
        self, header: QuicHeader, addr: NetworkAddress, now: float
    ) -> QuicServerConnection | RouteResult:
        assert header.version is not None
        odcid: bytes = header.destination_cid
        retry_scid: bytes | None = None
        checked = self._tokens.check(header.token, addr, now) if header.token else None
        if checked is None and header.token and header.token[0] == RETRY:
            # A Retry token that fails: tell the client (RFC 9000 section 8.1.3).
            close = _initial_close(header.version, header.destination_cid, header.source_cid)
            return RouteResult(None, replies=[(close, addr)])
        if checked is None and self._retry_wanted(now):
            return self._send_retry(header, addr, now)
        if checked is not None and checked.kind == RETRY:
            odcid, retry_scid = checked.original_dcid, header.destination_cid
            if checked.retry_scid != retry_scid:
                close = _initial_close(header.version, header.destination_cid, header.source_cid)
                return RouteResult(None, replies=[(close, addr)])
        tokens, issued = self._tokens, now
        quic = ServerQuicConnection(
            configuration=self.configuration,
            original_destination_connection_id=odcid,
            retry_source_connection_id=retry_scid,
            session_ticket_fetcher=self._fetch_ticket,
            session_ticket_handler=self._store_ticket,
            stream_window=self._limits.stream_buffer,
            connection_window=self._connection_window,
            cid_factory=self._cid_factory,
            preferred_address=self._preferred,
            new_token=(lambda: tokens.new_token(addr, issued))
            if self.validation.new_token
            else None,
            validated_address=addr if checked is not None else None,
            max_streams_bidi=self._limits.max_concurrent_streams,
            reset_token=reset_token,
            certificate_for=self.certificate_for,
        )
        conn = QuicServerConnection(
            quic,
            limits=self._limits,
            qpack=self._qpack,
            on_cid_issued=lambda cid: self._add_cid(conn, cid),
            on_cid_retired=lambda cid: self._drop_cid(conn, cid),
        )
        self._cids[conn] = set()
        source = self._source_of[conn] = str(addr[0])
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self._add_cid(conn, header.destination_cid)
        for cid in quic.host_connection_ids():
            self._add_cid(conn, cid)
        return conn

    def _send_retry(self, header: QuicHeader, addr: NetworkAddress, now: float) -> RouteResult:
        assert header.version is not None
        scid = self._cid_factory() if self._cid_factory else os.urandom(8)
        token = self._tokens.retry_token(addr, header.destination_cid, scid, now)
        packet = encode_quic_retry(
            version=header.version,
            source_cid=scid,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=token,
        )
        self.retries_sent += 1
        return RouteResult(None, replies=[(packet, addr)])

    def _add_cid(self, conn: QuicServerConnection, cid: bytes) -> None:
        if conn in self._cids:
            self._cids[conn].add(cid)
            self._by_cid[cid] = conn

    def _drop_cid(self, conn: QuicServerConnection, cid: bytes) -> None:
        self._cids.get(conn, set()).discard(cid)
        if self._by_cid.get(cid) is conn:
            del self._by_cid[cid]
            self._retired[cid] = None  # late packets to it are dropped, not reset
            while len(self._retired) > _MAX_RETIRED:
                self._retired.popitem(last=False)

    def _fetch_ticket(self, ticket_id: bytes) -> tls.SessionTicket | None:
        return self._tickets.pop(ticket_id, None)

    def _store_ticket(self, ticket: tls.SessionTicket) -> None:
        self._tickets[ticket.ticket] = ticket
        while len(self._tickets) > _MAX_TICKETS:
            self._tickets.popitem(last=False)
