"""HTTP/3 adapters over aioquic's H3Connection, and the stream bookkeeping hq-interop shares.

Receive credit: every request stream is gated (``quic_compat.GatedQuicConnection``) to
``stream_buffer`` bytes beyond what the owner has ``consumed``; HTTP/3 framing bytes and header
blocks are credited by the adapter itself, body bytes only when the owner says so. Send capacity
is ``stream_buffer`` minus the bytes aioquic still holds unacknowledged for the stream.

``close(NO_ERROR)`` sends GOAWAY (through ``quic_compat``: aioquic has no public API for it),
refuses streams at or above its id with H3_REQUEST_REJECTED and closes the QUIC connection with
H3_NO_ERROR once every request the owner saw is answered and acknowledged (aioquic's ``close``
drops queued data, hence ``poll()`` after each datagram). Any other code closes at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from aioquic.h3 import connection as h3c
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as qe
from aioquic.quic.connection import QuicConnection

from . import events as ev
from . import quic_compat
from .errors import ErrorCode, LocalProtocolError
from .messages import (
    HOP_BY_HOP,
    Headers,
    RequestHead,
    ResponseHead,
    validate_field_name,
    validate_field_value,
)
from .quic_compat import CompatH3Connection, GatedQuicConnection, StreamMessageError

__all__ = ["H3ClientAdapter", "H3ServerAdapter", "QuicStreamAdapter", "connection_closed"]

_SEND_ERRORS = (h3c.ProtocolError, ValueError, RuntimeError)


def connection_closed(event: qe.ConnectionTerminated) -> ev.ConnectionClosed:
    """Map aioquic's ConnectionTerminated (application or transport close, idle timeout)."""
    if event.frame_type is None:  # CONNECTION_CLOSE of the application (HTTP/3 code)
        code = ErrorCode.from_h3(event.error_code)
    elif event.error_code == 0 or event.reason_phrase == "Idle timeout":
        code = ErrorCode.NO_ERROR
    else:
        code = ErrorCode.PROTOCOL_ERROR
    return ev.ConnectionClosed(code, event.reason_phrase)


def _peer_error(code: int) -> ErrorCode:
    mapped = ErrorCode.from_h3(code)
    if mapped is ErrorCode.INTERNAL_ERROR and code != ErrorCode.INTERNAL_ERROR.h3_code:
        return ErrorCode.PROTOCOL_ERROR
    return mapped


def _outgoing(headers: Headers) -> Headers:
    """Fields as HTTP/3 may carry them: lowercase, no connection-specific ones (RFC 9114 4.2)."""
    out: Headers = []
    for name, value in headers:
        name = name.lower()
        if name in HOP_BY_HOP and not (name == b"te" and value.lower() == b"trailers"):
            continue
        if name != b"host":
            out.append((name, value))
    return out


def _parse_request(headers: Headers, limit: int) -> RequestHead | tuple[ErrorCode, str]:
    """A validated request head, or the error code and a short reason."""
    pseudo: dict[bytes, bytes] = {}
    fields: Headers = []
    host: bytes | None = None
    size = 0
    for name, value in headers:
        size += len(name) + len(value) + 32
        label = name.decode("latin-1")
        if not validate_field_value(value):
            return ErrorCode.MESSAGE_ERROR, f"invalid value for {label}"
        if name.startswith(b":"):
            if fields or host is not None:
                return ErrorCode.MESSAGE_ERROR, f"pseudo-header {label} after regular header"
            if name not in (b":method", b":scheme", b":authority", b":path"):
                return ErrorCode.MESSAGE_ERROR, f"unsupported pseudo-header {label}"
            pseudo[name] = value
        elif not validate_field_name(name):
            return ErrorCode.MESSAGE_ERROR, f"invalid header name {label}"
        elif name == b"host":
            host = value if host is None else host
        else:
            fields.append((name, value))
    if size > limit:
        return ErrorCode.HEADERS_TOO_LARGE, "header section too large"
    missing = [n.decode() for n in (b":method", b":scheme", b":path") if not pseudo.get(n)]
    if missing:
        return ErrorCode.MESSAGE_ERROR, "missing " + ", ".join(missing)
    authority = pseudo.get(b":authority", host or b"")
    return RequestHead(
        pseudo[b":method"], pseudo[b":scheme"], authority, pseudo[b":path"], fields, b"3"
    )


@dataclass(slots=True)
class StreamState:
    """Per request-stream bookkeeping shared by all roles."""

    visible: bool  # the owner knows the stream (saw its head, or sent it)
    received: int = 0  # QUIC stream bytes handed to the framing layer
    delivered: int = 0  # body bytes handed to the owner
    body_consumed: int = 0  # body bytes the owner credited back
    credited: int = 0  # stream bytes credited to the GatedQuicConnection
    headers: bool = False  # the peer's head arrived
    ignored: bool = False  # refused or abandoned: further frames are dropped
    msg_done: bool = False  # the peer's message ended (End event emitted)
    recv_done: bool = False  # QUIC receive side finished (FIN or RESET_STREAM)
    send_done: bool = False  # our side ended or was reset, or the peer sent STOP_SENDING
    reported: bool = False  # a ev.StreamReset was emitted


class QuicStreamAdapter:
    """Stream state, credit, capacity and reset handling common to the h3 and hq adapters."""

    _server = True

    def __init__(self, quic: QuicConnection, stream_buffer: int) -> None:
        self.quic = quic
        self._stream_buffer = stream_buffer
        self._streams: dict[int, StreamState] = {}
        self._closing = False
        self.drained = False  # after a graceful close: every answer sent and acknowledged
        self._failed = False
        self._terminated = False

    def _framing_events(self, event: qe.QuicEvent) -> list[H3Event]:
        raise NotImplementedError

    def _on_framing_event(self, event: H3Event, out: list[ev.Event]) -> None:
        raise NotImplementedError

    def _held(self, stream_id: int) -> int:
        """Bytes of the stream the framing layer buffers (not yet credited)."""
        raise NotImplementedError

    def _release(self, stream_id: int) -> None:
        """Drop the framing layer's state for a finished stream."""

    def _blocked(self, stream_id: int) -> bool:
        """The framing layer still holds a message part it cannot decode yet (QPACK)."""
        return False

    def _failure(self) -> tuple[int, str] | None:
        return None

    def _check_pending(self, stream_id: int, st: StreamState, out: list[ev.Event]) -> None:
        """Refuse a head that is growing beyond its limit."""

    def handle_event(self, event: qe.QuicEvent) -> list[ev.Event]:
        """Feed one aioquic event; return the normalized events it produced."""
        if isinstance(event, qe.ConnectionTerminated):
            if self._terminated:
                return []
            self._terminated = True
            return [connection_closed(event)]
        out: list[ev.Event] = []
        touched: set[int] = set()
        if isinstance(event, qe.StreamDataReceived) and event.stream_id % 4 == 0:
            st = self._streams.get(event.stream_id)
            if st is None and self._server:
                st = self._open(event.stream_id, visible=False)
            if st is not None:
                st.received += len(event.data)
                touched.add(event.stream_id)
        for h3_event in self._framing_events(event):
            stream_id = getattr(h3_event, "stream_id", None)
            if isinstance(stream_id, int):
                touched.add(stream_id)
            self._on_framing_event(h3_event, out)
        failure = self._failure()
        if failure is not None and not self._failed:
            self._failed = True
            out.append(ev.ProtocolError(None, _peer_error(failure[0]), failure[1]))
        if isinstance(event, qe.StreamDataReceived) and event.end_stream:
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.recv_done = True
        elif (
            isinstance(event, qe.StreamReset | qe.StopSendingReceived) and event.stream_id % 4 == 0
        ):
            self._on_peer_reset(event, out)
            touched.add(event.stream_id)
        for stream_id in touched:
            st = self._streams.get(stream_id)
            if st is not None:
                self._check_pending(stream_id, st, out)
                self._credit(stream_id, st)
                self._finish_check(stream_id, st)
        return out

    def _open(self, stream_id: int, *, visible: bool) -> StreamState:
        st = self._streams[stream_id] = StreamState(visible)
        if isinstance(self.quic, GatedQuicConnection):
            self.quic.set_receive_window(stream_id, self._stream_buffer)
        return st

    def _on_peer_reset(
        self, event: qe.StreamReset | qe.StopSendingReceived, out: list[ev.Event]
    ) -> None:
        st = self._streams.get(event.stream_id)
        if st is None:
            return
        was_done = st.send_done and st.msg_done
        if isinstance(event, qe.StreamReset):
            st.recv_done = True
            st.body_consumed = st.delivered  # whatever the owner still holds is moot now
        else:
            st.send_done = True
        if st.visible and not st.ignored and not st.reported and not was_done:
            st.reported = True
            out.append(ev.StreamReset(event.stream_id, ErrorCode.from_h3(event.error_code)))

    def _credit(self, stream_id: int, st: StreamState) -> None:
        target = st.received - self._held(stream_id) - (st.delivered - st.body_consumed)
        if target > st.credited:
            if isinstance(self.quic, GatedQuicConnection):
                self.quic.consumed(stream_id, target - st.credited)
            st.credited = target

    def _abandon(self, stream_id: int, st: StreamState) -> None:
        st.ignored = True
        st.body_consumed = st.delivered
        self._credit(stream_id, st)

    def _finish_check(self, stream_id: int, st: StreamState) -> None:
        finished = st.send_done and st.recv_done and not self._blocked(stream_id)
        if finished and self._streams.get(stream_id) is st:
            del self._streams[stream_id]
            self._release(stream_id)
        self._maybe_close()

    def _in_flight(self, st: StreamState) -> bool:
        """The owner still owes this stream an answer (graceful close waits for it)."""
        return st.visible and not st.send_done

    def _maybe_close(self) -> None:
        if not self._closing or self._terminated:
            return
        busy = any(self._in_flight(st) for st in self._streams.values())
        self.drained = not busy and not quic_compat.unacknowledged_data(self.quic)

    def poll(self) -> None:
        """Call after each received datagram: a graceful close waits for the last ACKs."""
        self._maybe_close()

    def _send(self, stream_id: int, action: Callable[[], None], ends: bool) -> None:
        st = self._streams.get(stream_id)
        if st is None or st.send_done:
            return  # finished, reset by either side, or unknown: nothing to send any more
        try:
            action()
        except _SEND_ERRORS as exc:
            raise LocalProtocolError(f"cannot send on stream {stream_id}: {exc}") from exc
        if ends:
            st.send_done = True
            self._finish_check(stream_id, st)

    def send_capacity(self, stream_id: int) -> int:
        """Bytes ``send_data`` accepts now: the buffer budget minus unacknowledged bytes."""
        st = self._streams.get(stream_id)
        if st is None or st.send_done:
            return 0
        return max(0, self._stream_buffer - quic_compat.stream_send_buffered(self.quic, stream_id))

    def consumed(self, stream_id: int, amount: int) -> None:
        """Credit back body bytes the next hop accepted (MAX_STREAM_DATA goes out on flush)."""
        st = self._streams.get(stream_id)
        if st is not None and amount > 0:
            st.body_consumed = min(st.delivered, st.body_consumed + amount)
            self._credit(stream_id, st)

    def reset_stream(self, stream_id: int, code: ErrorCode) -> None:
        """RESET_STREAM our side and STOP_SENDING theirs if it is still open."""
        st = self._streams.get(stream_id)
        if st is None:
            return
        if not st.send_done:
            with contextlib.suppress(*_SEND_ERRORS):
                self.quic.reset_stream(stream_id, code.h3_code)
            st.send_done = True
        if not st.recv_done:
            with contextlib.suppress(ValueError):
                self.quic.stop_stream(stream_id, code.h3_code)
        self._abandon(stream_id, st)
        self._finish_check(stream_id, st)

    def _goaway(self) -> None:
        """Tell the peer no new streams will be processed (HTTP/3 server only)."""

    def _refuse(
        self, stream_id: int, st: StreamState, code: ErrorCode, reason: str, out: list[ev.Event]
    ) -> None:
        """Give up on a stream whose message is malformed."""
        self.reset_stream(stream_id, code)
        out.append(ev.ProtocolError(stream_id, code, reason))

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """NO_ERROR: GOAWAY; ``drained`` turns True once every seen request is answered and
        acknowledged, and the owner closes the connection after a short linger (closing at once
        makes some clients report an error for a response they fully received). Else close now."""
        if self._terminated:
            return
        self._goaway()
        self._closing = True
        if code is ErrorCode.NO_ERROR:
            self._maybe_close()
        else:
            self.quic.close(error_code=code.h3_code, reason_phrase=code.name.lower())


class _H3Adapter(QuicStreamAdapter):
    """What both HTTP/3 roles share: the H3Connection, body, trailers, stream errors.

    ``max_field_section_size`` bounds a received header section (431 when exceeded);
    ``stream_buffer`` is both the per-stream receive window and the send buffer budget.
    """

    _data_event: type[ev.RequestData | ev.ResponseData]
    _trailers_event: type[ev.RequestTrailers | ev.ResponseTrailers]
    _end_event: type[ev.RequestEnd | ev.ResponseEnd]

    def __init__(
        self,
        quic: QuicConnection,
        *,
        max_field_section_size: int = 64 * 1024,
        stream_buffer: int = 256 * 1024,
        qpack: tuple[int, int] = (4096, 16),
    ) -> None:
        super().__init__(quic, stream_buffer)
        self._h3 = CompatH3Connection(
            quic,
            qpack_max_table_capacity=qpack[0],
            qpack_blocked_streams=qpack[1],
            max_field_section_size=max_field_section_size,
        )
        self._max_fields = max_field_section_size

    def _framing_events(self, event: qe.QuicEvent) -> list[H3Event]:
        return self._h3.handle_event(event)

    def _held(self, stream_id: int) -> int:
        return self._h3.buffered(stream_id)

    def _blocked(self, stream_id: int) -> bool:
        return self._h3.blocked(stream_id)

    def _release(self, stream_id: int) -> None:
        self._h3.release_stream(stream_id)

    def _failure(self) -> tuple[int, str] | None:
        return self._h3.failure

    def _on_head(
        self, stream_id: int, st: StreamState, event: HeadersReceived, out: list[ev.Event]
    ) -> None:
        raise NotImplementedError

    def _on_framing_event(self, event: H3Event, out: list[ev.Event]) -> None:
        if not isinstance(event, HeadersReceived | DataReceived | StreamMessageError):
            return
        stream_id = event.stream_id
        st = self._streams.get(stream_id)
        if st is None or st.ignored or getattr(event, "push_id", None) is not None:
            return
        if isinstance(event, StreamMessageError):
            if st.visible:
                out.append(ev.ProtocolError(stream_id, ErrorCode.MESSAGE_ERROR, event.reason))
                self.reset_stream(stream_id, ErrorCode.MESSAGE_ERROR)
            else:
                self._refuse(stream_id, st, ErrorCode.MESSAGE_ERROR, event.reason, out)
            return
        if isinstance(event, HeadersReceived) and not st.headers:
            self._on_head(stream_id, st, event, out)
            return
        if isinstance(event, HeadersReceived):
            out.append(self._trailers_event(stream_id, list(event.headers)))
        elif event.data:
            st.delivered += len(event.data)
            out.append(self._data_event(stream_id, event.data))
        if event.stream_ended and not st.msg_done:
            st.msg_done = True
            out.append(self._end_event(stream_id))

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue a DATA frame (with FIN when ``end_stream``)."""
        send = self._h3.send_data
        if data or end_stream:
            self._send(stream_id, lambda: send(stream_id, data, end_stream), end_stream)

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        """Queue a trailing HEADERS frame; this ends the stream."""
        fields = _outgoing(trailers)
        self._send(stream_id, lambda: self._h3.send_headers(stream_id, fields, True), True)

    def end_stream(self, stream_id: int) -> None:
        """End our side of the stream (an empty DATA frame with FIN)."""
        self.send_data(stream_id, b"", end_stream=True)


class H3ServerAdapter(_H3Adapter):
    """Server role over aioquic's H3Connection: Request* events in, responses out."""

    _data_event = ev.RequestData
    _trailers_event = ev.RequestTrailers
    _end_event = ev.RequestEnd
    _goaway_id: int | None = None  # streams at or above it are refused
    _last_stream_id = -4

    def _open(self, stream_id: int, *, visible: bool) -> StreamState:
        self._last_stream_id = max(self._last_stream_id, stream_id)
        return super()._open(stream_id, visible=visible)

    def _on_head(
        self, stream_id: int, st: StreamState, event: HeadersReceived, out: list[ev.Event]
    ) -> None:
        if self._goaway_id is not None and stream_id >= self._goaway_id:
            self.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
            return
        parsed = _parse_request(event.headers, self._max_fields)
        if not isinstance(parsed, RequestHead):
            self._refuse(stream_id, st, parsed[0], parsed[1], out)
            return
        st.headers = st.visible = True
        st.msg_done = event.stream_ended
        out.append(ev.RequestHeaders(stream_id, parsed, event.stream_ended))

    def _check_pending(self, stream_id: int, st: StreamState, out: list[ev.Event]) -> None:
        too_large = self._h3.pending_headers_size(stream_id) > self._max_fields
        if too_large and not st.headers and not st.ignored:
            self._refuse(
                stream_id, st, ErrorCode.HEADERS_TOO_LARGE, "header section too large", out
            )

    def _refuse(
        self, stream_id: int, st: StreamState, code: ErrorCode, reason: str, out: list[ev.Event]
    ) -> None:
        """Answer a request the owner never saw with a short error and stop reading it."""
        self._h3.reject_stream(stream_id)
        body = f"bad request: {reason}\n".encode()
        head = [
            (b":status", str(code.status_hint or 400).encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        with contextlib.suppress(*_SEND_ERRORS):  # the peer may have stopped the stream
            self._h3.send_headers(stream_id, head)
            self._h3.send_data(stream_id, body, end_stream=True)
        st.send_done = True
        if not st.recv_done:
            with contextlib.suppress(ValueError):
                self.quic.stop_stream(stream_id, code.h3_code)
        self._abandon(stream_id, st)
        out.append(ev.ProtocolError(stream_id, code, reason))

    def send_response(self, stream_id: int, head: ResponseHead, end_stream: bool = False) -> None:
        """Queue the final response HEADERS frame."""
        fields = [(b":status", str(head.status).encode()), *_outgoing(head.headers)]
        send = self._h3.send_headers
        self._send(stream_id, lambda: send(stream_id, fields, end_stream), end_stream)

    def send_informational(self, stream_id: int, head: ResponseHead) -> None:
        """Queue an interim (1xx, not 101) response."""
        if not 100 <= head.status < 200 or head.status == 101:
            raise LocalProtocolError(f"{head.status} is not an HTTP/3 informational status")
        fields = [(b":status", str(head.status).encode()), *_outgoing(head.headers)]
        self._send(stream_id, lambda: self._h3.send_headers(stream_id, fields), False)

    def _goaway(self) -> None:
        goaway = self._last_stream_id + 4
        if self._goaway_id is None or goaway < self._goaway_id:
            self._goaway_id = goaway
            self._h3.send_goaway(goaway)


class H3ClientAdapter(_H3Adapter):
    """Client role over aioquic's H3Connection: requests out, Response* events in.

    GOAWAY from the server is not reported: aioquic's H3Connection discards it.
    """

    _server = False
    _data_event = ev.ResponseData
    _trailers_event = ev.ResponseTrailers
    _end_event = ev.ResponseEnd

    def send_request(self, head: RequestHead, end_stream: bool = False) -> int:
        """Queue a request HEADERS frame on a new stream and return its id."""
        if self._closing or self._terminated or self._failed:
            raise LocalProtocolError("the connection is closing")
        stream_id = self.quic.get_next_available_stream_id()
        fields = [
            (b":method", head.method),
            (b":scheme", head.scheme),
            (b":authority", head.authority),
            (b":path", head.path),
            *_outgoing(head.headers),
        ]
        st = self._open(stream_id, visible=True)
        try:
            self._h3.send_headers(stream_id, fields, end_stream)
        except _SEND_ERRORS as exc:
            del self._streams[stream_id]
            raise LocalProtocolError(f"cannot send request: {exc}") from exc
        st.send_done = end_stream
        return stream_id

    def available_streams(self) -> int:
        """Streams the server's MAX_STREAMS credit lets us open now (0 once closing)."""
        if self._closing or self._terminated or self._failed:
            return 0
        return quic_compat.peer_bidi_stream_credit(self.quic)

    def _on_head(
        self, stream_id: int, st: StreamState, event: HeadersReceived, out: list[ev.Event]
    ) -> None:
        status = dict(event.headers).get(b":status", b"")
        fields = [(k, v) for k, v in event.headers if not k.startswith(b":")]
        head = ResponseHead(int(status), fields)  # aioquic checked it has three digits
        if head.status < 200:
            out.append(ev.InformationalResponse(stream_id, head))
            return
        st.headers = True
        st.msg_done = event.stream_ended
        out.append(ev.ResponseHeaders(stream_id, head, event.stream_ended))

    def _in_flight(self, st: StreamState) -> bool:
        return st.visible and not st.msg_done
