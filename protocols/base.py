"""The adapter contracts: what every server-role and client-role protocol adapter offers."""

from __future__ import annotations

from typing import Protocol

from .errors import ErrorCode
from .events import Event
from .messages import Headers, RequestHead, ResponseHead

__all__ = ["ByteStreamAdapter", "ClientAdapter", "ServerAdapter", "StreamSender"]


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

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the socket; ``b""`` means end of file."""

    def data_to_send(self) -> bytes:
        """Take the bytes queued for the socket."""

    def next_events(self) -> list[Event]:
        """Events made ready by sending rather than receiving (h1 pipelining: the next request
        becomes visible once the current response ended). Always ``[]`` for h2."""
