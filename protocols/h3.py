"""HTTP/3 adapters over aioquic's H3Connection (stream bookkeeping: ``protocols._quic_streams``).

``close(NO_ERROR)`` sends GOAWAY (through the engine's H3 shim: aioquic has no public API for it),
refuses streams at or above its id with H3_REQUEST_REJECTED and closes the QUIC connection with
H3_NO_ERROR once every request the owner saw is answered and acknowledged (aioquic's ``close``
drops queued data, hence ``poll()`` after each datagram). Any other code closes at once.
"""

from __future__ import annotations

import contextlib

from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as qe
from aioquic.quic.connection import QuicConnection

from . import events as ev
from ._message_checks import BodyMeter, authority_problem, declared_length, path_problem
from ._quic_streams import SEND_ERRORS as _SEND_ERRORS
from ._quic_streams import QuicStreamAdapter, StreamState, connection_closed
from .engines.aioquic import CompatH3Connection, StreamMessageError, peer_bidi_stream_credit
from .errors import ErrorCode, LocalProtocolError
from .flood import FloodBudget
from .limits import DEFAULT_STREAM_BUFFER, ConnectionLimits
from .messages import (
    HOP_BY_HOP,
    Headers,
    RequestHead,
    ResponseHead,
    validate_field_name,
    validate_field_value,
)

__all__ = [
    "H3ClientAdapter",
    "H3ServerAdapter",
    "QuicStreamAdapter",
    "StreamState",
    "connection_closed",
]


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


def _parse_request(
    headers: Headers, limit: int, max_count: int | None = None
) -> RequestHead | tuple[ErrorCode, str]:
    """A validated request head, or the error code and a short reason."""
    pseudo: dict[bytes, bytes] = {}
    fields: Headers = []
    host: bytes | None = None
    size = 0
    length = declared_length(headers)
    if isinstance(length, str):
        return ErrorCode.MESSAGE_ERROR, length
    length_kept = False
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
        elif name != b"content-length" or not length_kept:  # equal repeats collapse
            length_kept = length_kept or name == b"content-length"
            fields.append((name, value))
    if size > limit or (max_count is not None and len(fields) > max_count):
        return ErrorCode.HEADERS_TOO_LARGE, "header section too large"
    missing = [n.decode() for n in (b":method", b":scheme", b":path") if not pseudo.get(n)]
    if missing:
        return ErrorCode.MESSAGE_ERROR, "missing " + ", ".join(missing)
    problem = path_problem(pseudo[b":method"], pseudo[b":path"])
    if problem is not None:
        return ErrorCode.MESSAGE_ERROR, problem
    authority = pseudo.get(b":authority", host or b"")
    problem = authority_problem(authority)
    if problem is not None:
        return ErrorCode.MESSAGE_ERROR, problem
    return RequestHead(
        pseudo[b":method"], pseudo[b":scheme"], authority, pseudo[b":path"], fields, b"3"
    )


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
        stream_buffer: int = DEFAULT_STREAM_BUFFER,
        qpack: tuple[int, int] = (4096, 16),
        max_header_count: int | None = None,
        budget: FloodBudget | None = None,
    ) -> None:
        super().__init__(quic, stream_buffer)
        self._h3 = CompatH3Connection(
            quic,
            qpack_max_table_capacity=qpack[0],
            qpack_blocked_streams=qpack[1],
            max_field_section_size=max_field_section_size,
            max_field_count=max_header_count,
            budget=budget,
        )
        self._max_fields = max_field_section_size
        self._max_count = max_header_count
        self._flood = budget

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
                code = ErrorCode.HEADERS_TOO_LARGE if event.too_large else ErrorCode.MESSAGE_ERROR
                self._refuse(stream_id, st, code, event.reason, out)
            return
        if isinstance(event, HeadersReceived) and not st.headers:
            self._on_head(stream_id, st, event, out)
            return
        if isinstance(event, HeadersReceived):
            if st.meter is not None and not self._metered(stream_id, st, b"", True, out):
                return
            out.append(self._trailers_event(stream_id, list(event.headers)))
        elif event.data or st.meter is not None:
            st.delivered += len(event.data)  # held-back bytes too: credited once consumed
            if not self._metered(stream_id, st, event.data, event.stream_ended, out):
                return
        if event.stream_ended and not st.msg_done:
            st.msg_done = True
            out.append(self._end_event(stream_id))
            if st.stop_deferred and not st.reported:
                st.reported = True
                out.append(ev.StreamReset(stream_id, ErrorCode.NO_ERROR))

    def _metered(
        self, stream_id: int, st: StreamState, data: bytes, ended: bool, out: list[ev.Event]
    ) -> bool:
        """Hand on what ``st.meter`` releases of ``data`` (all of it without a meter); False
        after a stream error when the body disagrees with its content-length."""
        meter = st.meter
        passed: bytes | None = data
        if meter is not None:
            passed = meter.take(data)
            if passed is not None and ended:
                tail = meter.finish()
                passed = None if tail is None else passed + tail
        if passed is None:
            assert meter is not None
            out.append(ev.ProtocolError(stream_id, ErrorCode.MESSAGE_ERROR, meter.problem()))
            self.reset_stream(stream_id, ErrorCode.MESSAGE_ERROR)
            return False
        if passed:
            out.append(self._data_event(stream_id, passed))
        return True

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue a DATA frame (with FIN when ``end_stream``)."""
        send = self._h3.send_data
        if data and self._flood is not None:
            self._flood.useful()
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
    """Server role over aioquic's H3Connection: Request* events in, responses out.

    A request whose header section is over ``max_field_section_size`` (decoded, RFC 9110 field
    sizes; advertised as SETTINGS_MAX_FIELD_SECTION_SIZE) or ``max_header_count`` fields gets
    431 on its own stream. The flood budget (``protocols.flood``: ``max_premature_resets``,
    ``max_control_frames``) closes the connection with H3_EXCESSIVE_LOAD on breach and emits
    ProtocolError(None, ENHANCE_YOUR_CALM).

    A differing or malformed content-length or a bad ``:path`` is a 400 on its stream; a body
    that disagrees with its content-length is RESET_STREAM(H3_MESSAGE_ERROR) and a
    ProtocolError in place of the bytes or the RequestEnd that would complete it (aioquic
    checks only at the end of the stream, after handing the bytes on: ``BodyMeter``).
    """

    def __init__(
        self,
        quic: QuicConnection,
        *,
        max_field_section_size: int = 64 * 1024,
        stream_buffer: int = DEFAULT_STREAM_BUFFER,
        qpack: tuple[int, int] = (4096, 16),
        max_header_count: int = 100,
        max_premature_resets: int = 100,
        max_control_frames: int = 1000,
    ) -> None:
        budget = FloodBudget(
            max_premature_resets=max_premature_resets, max_control_frames=max_control_frames
        )
        super().__init__(
            quic,
            max_field_section_size=max_field_section_size,
            stream_buffer=stream_buffer,
            qpack=qpack,
            max_header_count=max_header_count,
            budget=budget,
        )
        self._budget = budget

    @classmethod
    def from_limits(
        cls, quic: QuicConnection, limits: ConnectionLimits, *, qpack: tuple[int, int] = (4096, 16)
    ) -> H3ServerAdapter:
        """The adapter with the sizes and budgets of ``limits``."""
        return cls(
            quic,
            max_field_section_size=limits.max_header_size,
            stream_buffer=limits.stream_buffer,
            qpack=qpack,
            max_header_count=limits.max_header_count,
            max_premature_resets=limits.max_premature_resets,
            max_control_frames=limits.max_control_frames,
        )

    _data_event = ev.RequestData
    _trailers_event = ev.RequestTrailers
    _end_event = ev.RequestEnd
    _goaway_id: int | None = None  # streams at or above it are refused
    _last_stream_id = -4

    def _open(self, stream_id: int, *, visible: bool) -> StreamState:
        self._last_stream_id = max(self._last_stream_id, stream_id)
        self._budget.stream_opened()
        return super()._open(stream_id, visible=visible)

    def _on_peer_reset(
        self, event: qe.StreamReset | qe.StopSendingReceived, out: list[ev.Event]
    ) -> None:
        st = self._streams.get(event.stream_id)
        premature = st is not None and not st.send_done and not st.peer_reset
        if st is not None:
            st.peer_reset = True
        super()._on_peer_reset(event, out)  # the StreamReset event comes first, as always
        if premature and self._budget.premature_reset() is not None and not self._failed:
            self._failed = True
            reason = self._budget.breach or "rapid reset"
            self._h3.excessive_load(reason)
            out.append(ev.ProtocolError(None, ErrorCode.ENHANCE_YOUR_CALM, reason))

    def _on_head(
        self, stream_id: int, st: StreamState, event: HeadersReceived, out: list[ev.Event]
    ) -> None:
        if self._goaway_id is not None and stream_id >= self._goaway_id:
            self.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
            return
        parsed = _parse_request(event.headers, self._max_fields, self._max_count)
        if not isinstance(parsed, RequestHead):
            self._refuse(stream_id, st, parsed[0], parsed[1], out)
            return
        st.headers = st.visible = True
        st.msg_done = event.stream_ended
        length = declared_length(parsed.headers)  # _parse_request checked its form
        if isinstance(length, int) and not event.stream_ended:
            st.meter = BodyMeter(length)
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
        self._budget.useful()
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
        if head.method == b"HEAD":
            self._h3.expect_no_content(stream_id)
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
        return peer_bidi_stream_credit(self.quic)

    def _on_head(
        self, stream_id: int, st: StreamState, event: HeadersReceived, out: list[ev.Event]
    ) -> None:
        status = int(dict(event.headers).get(b":status", b"0"))  # aioquic checked: 3 digits
        if not 100 <= status <= 599:
            self._refuse(stream_id, st, ErrorCode.MESSAGE_ERROR, f"invalid :status {status}", out)
            return
        fields = [(k, v) for k, v in event.headers if not k.startswith(b":")]
        head = ResponseHead(status, fields)
        if head.status < 200:
            out.append(ev.InformationalResponse(stream_id, head))
            return
        st.headers = True
        st.msg_done = event.stream_ended
        out.append(ev.ResponseHeaders(stream_id, head, event.stream_ended))

    def _in_flight(self, st: StreamState) -> bool:
        return st.visible and not st.msg_done
