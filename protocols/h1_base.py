"""What both HTTP/1.1 adapter roles share: the h11 connection, the output buffer, body sending
and the plain-text error responses the server role writes itself."""

from __future__ import annotations

import h11

from .errors import ErrorCode
from .events import ConnectionClosed, Event
from .limits import DEFAULT_STREAM_BUFFER
from .messages import Headers, get_header

__all__ = [
    "NO_BODY_STATUSES",
    "REASONS",
    "SLACK",
    "H1Base",
    "declares_body",
    "error_fields",
    "error_response",
    "h11_headers",
]

NO_BODY_STATUSES = frozenset({204, 304})
_SEND_WINDOW = DEFAULT_STREAM_BUFFER  # what a body may queue before backpressure
SLACK = 8 * 1024  # h11's own buffer limit sits above the scanner's, which trips first
REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    505: b"HTTP Version Not Supported",
}


def h11_headers(headers: list[tuple[bytes, bytes]] | h11._headers.Headers) -> Headers:
    """h11's header list as plain bytes pairs."""
    return [(bytes(name), bytes(value)) for name, value in headers]


def declares_body(headers: Headers) -> bool:
    """True when request framing headers announce a body (RFC 9112 section 6.3)."""
    if get_header(headers, b"transfer-encoding") is not None:
        return True
    length = get_header(headers, b"content-length")
    return length is not None and length.strip() != b"0"


def error_fields(body: bytes) -> Headers:
    """The fields of a plain-text error response that closes the connection."""
    return [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ]


def error_response(status: int, body: bytes) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection."""
    head = b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Error"))
    fields = b"".join(b"%s: %s\r\n" % item for item in error_fields(body))
    return head + fields + b"\r\n" + body


class H1Base:
    """What both roles share: the h11 connection, the outgoing buffer and body sending."""

    pauses_reading_on_buffer = True  # no flow control: the owner stops reading the socket

    def __init__(self, role: type[h11.CLIENT] | type[h11.SERVER], max_buffer: int) -> None:
        self._conn = h11.Connection(role, max_incomplete_event_size=max_buffer)
        self._out: list[bytes] = []
        self._stream_id = 0
        self._chunked = False
        self._must_close = False
        self._reset = False
        self._closed_reported = False

    def _send(self, event: h11._events.Event) -> None:
        data = self._conn.send(event)
        if data:
            self._out.append(data)

    def data_to_send(self) -> bytes:
        """Take the bytes queued for the socket."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def _active(self, stream_id: int) -> bool:
        return stream_id == self._stream_id and self._conn.our_state is h11.SEND_BODY

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue body bytes of the current message."""
        if not self._active(stream_id):
            return
        if data:
            self._send(h11.Data(data=data))
        if end_stream:
            self.end_stream(stream_id)

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        """End the message with trailers; dropped when the body is not chunked."""
        if not self._active(stream_id):
            return
        self._send(h11.EndOfMessage(headers=trailers if self._chunked else []))
        self._after_message_sent()

    def end_stream(self, stream_id: int) -> None:
        """End the current message."""
        if not self._active(stream_id):
            return
        self._send(h11.EndOfMessage())
        self._after_message_sent()

    def reset_stream(self, stream_id: int, code: ErrorCode) -> None:
        """HTTP/1.1 cannot reset a message: the connection must close, now."""
        if stream_id == self._stream_id:
            self._must_close = True
            self._reset = True

    def send_capacity(self, stream_id: int) -> int:
        """A fixed window: the socket's own write buffer limits do the real pacing."""
        return _SEND_WINDOW if self._active(stream_id) else 0

    def consumed(self, stream_id: int, amount: int) -> None:
        """No flow control in HTTP/1.1: the owner pauses socket reads instead."""

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """Close after the current message."""
        self._must_close = True

    @property
    def must_close(self) -> bool:
        """True when the connection cannot carry another message."""
        return self._must_close or self._conn.our_state in (h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)

    def _after_message_sent(self) -> None:
        """Hook for the role's cycle handling."""

    def _closed_event(self, message: str) -> list[Event]:
        if self._closed_reported:
            return []
        self._closed_reported = True
        return [ConnectionClosed(ErrorCode.NO_ERROR, message)]
