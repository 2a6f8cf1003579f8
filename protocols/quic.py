"""Per-QUIC-connection core: drains aioquic events, picks the adapter by ALPN, tracks CIDs.

Use from an I/O shell (one ``QuicServerConnection`` per QUIC connection, usually made by
``QuicRouter``):

- on a datagram: ``events = conn.receive_datagram(data, addr, now)``, act on the events;
- on the timer: ``events = conn.handle_timer(now)`` when ``now >= conn.timer()``;
- after anything that queued data (adapter calls, ``consumed``): ``conn.datagrams_to_send(now)``
  and send each ``(data, addr)``, then re-arm the timer from ``conn.timer()``; events that
  sending produced (rare) are returned by ``pending_events()`` and by the next call above;
- once ``conn.closed``: forget the connection (``QuicRouter.remove``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aioquic.quic import events as qe

from .engines.aioquic import (
    EcnQuicConnection,
    GatedQuicConnection,
    ServerQuicConnection,
    connection_version,
    smoothed_rtt,
)
from .errors import ErrorCode
from .events import CapacityAvailable, Event
from .h3 import H3ServerAdapter, connection_closed
from .hq import HqServerAdapter
from .limits import DEFAULT_LIMITS, ConnectionLimits

__all__ = ["NetworkAddress", "QuicFacts", "QuicServerConnection", "adapter_for_alpn"]

NetworkAddress = tuple[Any, ...]
"""An IPv4 ``(host, port)`` or IPv6 ``(host, port, flowinfo, scope_id)`` tuple."""

CidCallback = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class QuicFacts:
    """What hooks may want to know about the QUIC connection (a snapshot)."""

    alpn: str | None
    version: int | None
    original_dcid: str  # hex
    sni: str | None
    early_data: bool  # 0-RTT was accepted
    session_resumed: bool
    rtt: float  # smoothed RTT in seconds (0.0 before the first sample)
    address_validated: bool  # by a token, the handshake or path validation
    host_cid: str  # hex: the connection ID the server uses now


def adapter_for_alpn(alpn: str | None) -> type[H3ServerAdapter] | type[HqServerAdapter] | None:
    """The server adapter class for a negotiated ALPN, or None when unsupported."""
    if alpn is None:
        return None
    if alpn == "h3" or alpn.startswith("h3-"):
        return H3ServerAdapter
    if alpn == "hq-interop" or alpn.startswith("hq-"):
        return HqServerAdapter
    return None


class QuicServerConnection:
    """One server-side QUIC connection and its HTTP adapter (chosen when ALPN is known)."""

    def __init__(
        self,
        quic: GatedQuicConnection,
        *,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        qpack: tuple[int, int] = (4096, 16),
        on_cid_issued: CidCallback | None = None,
        on_cid_retired: CidCallback | None = None,
    ) -> None:
        self.quic = quic
        self.adapter: H3ServerAdapter | HqServerAdapter | None = None
        self.closed = False
        self._limits = limits
        self._qpack = qpack
        self._on_cid_issued = on_cid_issued
        self._on_cid_retired = on_cid_retired
        self._early: list[qe.QuicEvent] = []  # events that arrived before the ALPN was known
        self._pending: list[Event] = []
        self._closed_reported = False
        self._session_resumed = False

    @property
    def facts(self) -> QuicFacts:
        """A snapshot of the connection's TLS / QUIC facts."""
        quic = self.quic
        return QuicFacts(
            alpn=quic.tls.alpn_negotiated if hasattr(quic, "tls") else None,
            version=connection_version(quic),
            original_dcid=quic.original_destination_connection_id.hex(),
            sni=quic.server_name,
            early_data=bool(hasattr(quic, "tls") and quic.tls.early_data_accepted),
            session_resumed=self._session_resumed,
            rtt=smoothed_rtt(quic),
            address_validated=isinstance(quic, ServerQuicConnection) and quic.address_validated,
            host_cid=quic.host_cid.hex(),
        )

    def receive_datagram(
        self, data: bytes, addr: NetworkAddress, now: float, ecn: int = 0
    ) -> list[Event]:
        """Feed one datagram (``ecn``: its IP header's ECN bits); return the events it produced
        (plus CapacityAvailable(None))."""
        if ecn and isinstance(self.quic, EcnQuicConnection):
            self.quic.receive_datagram(data, addr, now, ecn)
        else:
            self.quic.receive_datagram(data, addr, now)
        events = self._drain()
        if self.adapter is not None:
            self.adapter.poll()
        events.append(CapacityAvailable(None))  # ACKs may have freed send buffer space
        return events

    def handle_timer(self, now: float) -> list[Event]:
        """Run aioquic's timer (loss detection, idle timeout, close); return the events."""
        self.quic.handle_timer(now)
        return self._drain()

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, NetworkAddress]]:
        """Everything queued, as datagrams. New connection IDs are reported right away."""
        datagrams = self.quic.datagrams_to_send(now)
        self._pending.extend(self._drain())
        return datagrams

    def pending_events(self) -> list[Event]:
        """Events produced while sending (returned once, also by the next receive/timer call)."""
        events, self._pending = self._pending, []
        return events

    def timer(self) -> float | None:
        """The absolute time at which ``handle_timer`` must run, or None."""
        return self.quic.get_timer()

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """Close gracefully (through the adapter when there is one) or with an error code."""
        if self.adapter is not None:
            self.adapter.close(code)
        else:
            self.quic.close(error_code=code.h3_code, reason_phrase=code.name.lower())

    def _drain(self) -> list[Event]:
        out, self._pending = self._pending, []
        while (event := self.quic.next_event()) is not None:
            self._route(event, out)
        return out

    def _route(self, event: qe.QuicEvent, out: list[Event]) -> None:
        if isinstance(event, qe.ConnectionIdIssued):
            if self._on_cid_issued is not None:
                self._on_cid_issued(event.connection_id)
            return
        if isinstance(event, qe.ConnectionIdRetired):
            if self._on_cid_retired is not None:
                self._on_cid_retired(event.connection_id)
            return
        if isinstance(event, qe.ProtocolNegotiated | qe.HandshakeCompleted):
            if isinstance(event, qe.HandshakeCompleted):
                self._session_resumed = event.session_resumed
            self._choose(event.alpn_protocol, out)
            return
        if isinstance(event, qe.ConnectionTerminated):
            self.closed = True
            if self._closed_reported:
                return
            self._closed_reported = True
            if self.adapter is None:
                out.append(connection_closed(event))
                return
        elif self.adapter is None:
            self._choose(self.quic.tls.alpn_negotiated, out)
            if self.adapter is None:
                self._early.append(event)  # never dropped: replayed once the adapter exists
                return
        out.extend(self.adapter.handle_event(event))

    def _choose(self, alpn: str | None, out: list[Event]) -> None:
        if self.adapter is not None or alpn is None:
            return
        cls = adapter_for_alpn(alpn)
        if cls is None:
            self.quic.close(
                error_code=ErrorCode.INTERNAL_ERROR.h3_code, reason_phrase="unsupported ALPN"
            )
            return
        if cls is H3ServerAdapter:
            self.adapter = H3ServerAdapter.from_limits(self.quic, self._limits, qpack=self._qpack)
        else:
            self.adapter = HqServerAdapter(
                self.quic,
                stream_buffer=self._limits.stream_buffer,
                max_request_line=self._limits.max_request_line,
            )
        early, self._early = self._early, []
        for event in early:
            out.extend(self.adapter.handle_event(event))
