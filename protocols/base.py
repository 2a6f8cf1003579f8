"""The adapter contracts: what every server-role and client-role protocol adapter offers."""

from __future__ import annotations

from typing import Protocol

from aioquic.quic.events import QuicEvent

from .errors import ErrorCode
from .events import Event
from .messages import Headers, RequestHead, ResponseHead

__all__ = [
    "ByteStreamAdapter",
    "ClientAdapter",
    "ClientQuicAdapter",
    "ClientTcpAdapter",
    "QuicAdapter",
    "ServerAdapter",
    "ServerQuicAdapter",
    "ServerTcpAdapter",
    "StreamSender",
    "TcpAdapter",
]


class StreamSender(Protocol):
    """Sending side shared by both roles. Every call only queues; the owner flushes afterwards."""

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue body bytes; never more than ``send_capacity`` allows."""

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        """Queue trailers; this ends the stream (on h1 without chunked framing they are dropped)."""

    def end_stream(self, stream_id: int) -> None:
        """End the stream's body."""

    def reset_stream(self, stream_id: int, code: ErrorCode) -> None:
        """Abandon the stream (h1: the connection is unusable afterwards)."""

    def send_capacity(self, stream_id: int) -> int:
        """Bytes ``send_data`` accepts now without breaking flow control or buffer limits."""

    def consumed(self, stream_id: int, amount: int) -> None:
        """Credit back ``amount`` received body bytes that the next hop has accepted."""

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """Start closing the connection (GOAWAY / CONNECTION_CLOSE / Connection: close)."""


class ServerAdapter(StreamSender, Protocol):
    """Server role: emits Request* events, sends responses."""

    def send_response(self, stream_id: int, head: ResponseHead, end_stream: bool = False) -> None:
        """Queue a final response head."""

    def send_informational(self, stream_id: int, head: ResponseHead) -> None:
        """Queue a 1xx response head."""


class ClientAdapter(StreamSender, Protocol):
    """Client role: sends requests, emits Response* events."""

    def send_request(self, head: RequestHead, end_stream: bool = False) -> int:
        """Queue a request head and return its stream id."""

    def available_streams(self) -> int:
        """How many more requests the connection accepts now (h1: 1 when idle, else 0)."""


class ByteStreamAdapter(Protocol):
    """The byte side of a TCP protocol (h1, h2): bytes in, events out, bytes to write."""

    # True when the owner must stop reading the socket while a stream's received body is over
    # its high water: the protocol has no flow control of its own (h1). False when flow control
    # already bounds what the peer may send (h2).
    pauses_reading_on_buffer: bool

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the socket; ``b""`` means end of file."""

    def data_to_send(self) -> bytes:
        """Take the bytes queued for the socket."""

    def next_events(self) -> list[Event]:
        """Events made ready by sending rather than receiving (h1 pipelining: the next request
        becomes visible once the current response ended). Always ``[]`` for h2."""


class TcpAdapter(ByteStreamAdapter, StreamSender, Protocol):
    """An adapter a driver runs over a TCP/TLS byte stream (h1, h2), either role."""


class ServerTcpAdapter(TcpAdapter, ServerAdapter, Protocol):
    """A server-role adapter over a byte stream (``H1ServerAdapter``, ``H2ServerAdapter``)."""


class ClientTcpAdapter(TcpAdapter, ClientAdapter, Protocol):
    """A client-role adapter over a byte stream (``H1ClientAdapter``, ``H2ClientAdapter``)."""


class QuicAdapter(StreamSender, Protocol):
    """The HTTP side of a QUIC connection (h3, hq): QUIC events in, stream events out; what it
    sends goes into the QUIC connection, which the owner transmits."""

    def handle_event(self, event: QuicEvent) -> list[Event]:
        """Feed one QUIC event; return the normalized events it produced."""

    def poll(self) -> None:
        """Call after each received datagram (a graceful close waits for the last ACKs)."""


class ServerQuicAdapter(QuicAdapter, ServerAdapter, Protocol):
    """A server-role adapter over QUIC (``H3ServerAdapter``, ``HqServerAdapter``)."""


class ClientQuicAdapter(QuicAdapter, ClientAdapter, Protocol):
    """A client-role adapter over QUIC (``H3ClientAdapter``)."""
