"""HTTP/2 adapters: an h2 connection in server or client role, speaking normalized events.

The shared machinery (bytes in and out, body sending, flow-control credit, closing, the flood
budget) is ``protocols._h2_base.H2Adapter``; this module holds what differs by role: request
heads and their limits (server), requests and stream credit (client).
"""

from __future__ import annotations

from contextlib import suppress

import h2.events as h2e
from h2.errors import ErrorCodes
from h2.exceptions import H2Error
from h2.settings import SettingCodes

from . import _h2_convert as conv
from ._h2_base import (
    DEFAULT_INITIAL_WINDOW,
    DEFAULT_MAX_HEADER_LIST_SIZE,
    MAX_WINDOW,
    H2Adapter,
    H2Stream,
)
from ._message_checks import BodyMeter, declared_length
from .errors import ErrorCode, LocalProtocolError
from .events import (
    Event,
    InformationalResponse,
    ProtocolError,
    RequestData,
    RequestEnd,
    RequestHeaders,
    RequestTrailers,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    ResponseTrailers,
)
from .flood import FloodBudget, field_section_size
from .limits import ConnectionLimits
from .messages import RequestHead, ResponseHead

__all__ = [
    "DEFAULT_INITIAL_WINDOW",
    "DEFAULT_MAX_HEADER_LIST_SIZE",
    "H2ClientAdapter",
    "H2ServerAdapter",
]

_ASSUMED_MAX_STREAMS = 100  # until the server's SETTINGS arrive (RFC 9113 section 6.5.2)
_NO_CONTENT = frozenset({204, 304})  # statuses whose responses never have a body
_DECODE_FACTOR = 4  # HPACK-decode up to this many times max_header_list_size (then: GOAWAY)


class H2ServerAdapter(H2Adapter):
    """HTTP/2 server role: emits Request* events and sends responses.

    Limits: a request whose decoded header section exceeds ``max_header_list_size`` (RFC 9110
    field sizes; also advertised as SETTINGS_MAX_HEADER_LIST_SIZE) or carries more than
    ``max_header_count`` fields is answered 431 on its own stream; blocks decoding beyond
    ``_DECODE_FACTOR`` times the limit are a connection error. After ``max_requests`` streams
    (0: no limit) a graceful GOAWAY sends the client to a new connection. The flood budget
    (``max_premature_resets``, ``max_control_frames``; see ``protocols.flood``) ends the
    connection with GOAWAY(ENHANCE_YOUR_CALM) and a ProtocolError(None, ENHANCE_YOUR_CALM).

    Downgrade smuggling: a differing or malformed content-length, or a bad ``:path``, is a 400
    on its stream; a body that disagrees with its content-length (counted here, not by h2:
    ``protocols.h2_compat``) is a 400 (RST_STREAM(PROTOCOL_ERROR) once the response started)
    and a ProtocolError in place of the bytes or the RequestEnd that would complete it
    (``protocols._message_checks.BodyMeter``).
    """

    def __init__(
        self,
        *,
        max_concurrent_streams: int = 100,
        initial_window: int = DEFAULT_INITIAL_WINDOW,
        max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE,
        connection_window: int | None = None,
        max_header_count: int = 100,
        max_premature_resets: int = 100,
        max_control_frames: int = 1000,
        max_requests: int = 10_000,
    ) -> None:
        if max_header_count <= 0 or max_requests < 0:
            raise ValueError("max_header_count must be positive, max_requests not negative")
        self._flood = FloodBudget(
            max_premature_resets=max_premature_resets, max_control_frames=max_control_frames
        )
        super().__init__(
            client_side=False,
            initial_window=initial_window,
            max_header_list_size=max_header_list_size,
            connection_window=connection_window,
            settings={SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams},
            budget=self._flood,
            decoder_cap=max_header_list_size * _DECODE_FACTOR,
            meter_bodies=True,
        )
        self._max_field_bytes = max_header_list_size

        self._max_header_count = max_header_count
        self._max_requests = max_requests

    @classmethod
    def from_limits(cls, limits: ConnectionLimits) -> H2ServerAdapter:
        """The adapter with the sizes and budgets of ``limits``."""
        return cls(
            max_concurrent_streams=limits.max_concurrent_streams,
            initial_window=limits.stream_buffer,
            max_header_list_size=limits.max_header_size,
            max_header_count=limits.max_header_count,
            max_premature_resets=limits.max_premature_resets,
            max_control_frames=limits.max_control_frames,
            max_requests=limits.max_requests_per_connection,
        )

    def send_response(self, stream_id: int, head: ResponseHead, end_stream: bool = False) -> None:
        """Queue a final response head (status >= 200)."""
        if head.status < 200:
            raise LocalProtocolError(f"status {head.status} is not final; use send_informational")
        self._send_head(stream_id, conv.response_fields(head), end_stream, final=True)

    def send_informational(self, stream_id: int, head: ResponseHead) -> None:
        """Queue a 1xx response head (101 does not exist in HTTP/2)."""
        if not 100 <= head.status < 200 or head.status == 101:
            raise LocalProtocolError(f"status {head.status} is not an HTTP/2 informational status")
        self._send_head(stream_id, conv.response_fields(head), False, final=False)

    def _send_head(
        self, stream_id: int, fields: conv.Fields, end_stream: bool, *, final: bool
    ) -> None:
        stream = self._streams.get(stream_id)
        if self._dead or stream is None or stream.send_done:
            return
        if stream.head_sent:
            raise LocalProtocolError(f"stream {stream_id}: the response head was already sent")
        self._check_fields(fields)
        self._flood.useful()
        with self._guard(stream_id):
            self._conn.send_headers(stream_id, fields, end_stream=end_stream)
            stream.head_sent = final
            if end_stream:
                self._sent_end(stream_id, stream)

    _data_event = RequestData
    _trailers_event = RequestTrailers
    _end_event = RequestEnd

    def _on_role_event(self, ev: h2e.Event, out: list[Event]) -> None:
        if not isinstance(ev, h2e.RequestReceived):
            return
        stream_id = ev.stream_id
        ended = ev.stream_ended is not None
        self._flood.stream_opened()
        if self._goaway_sent is not None and stream_id > self._goaway_sent:
            with self._guard(stream_id):  # opened after our GOAWAY: not processed, retryable
                self._conn.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        if self._max_requests and self._flood.opened >= self._max_requests:
            self._graceful_goaway(stream_id)  # this one is served; the client moves on
        raw = ev.headers
        regular = sum(1 for name, _ in raw if name[:1] != b":")
        if regular > self._max_header_count or field_section_size(raw) > self._max_field_bytes:
            reason = f"more than {self._max_header_count} fields or {self._max_field_bytes} bytes"
            self._reject(stream_id, reason, ended, status=431)
            out.append(ProtocolError(stream_id, ErrorCode.HEADERS_TOO_LARGE, reason))
            return
        head = conv.request_head(raw)
        if isinstance(head, str):
            self._reject(stream_id, head, ended)
            out.append(ProtocolError(stream_id, ErrorCode.MESSAGE_ERROR, head))
            return
        expected = declared_length(head.headers)  # request_head has checked its form
        assert not isinstance(expected, str)
        if ended and expected:
            reason = f"content-length {expected} on a request without a body"
            self._reject(stream_id, reason, ended)
            out.append(ProtocolError(stream_id, ErrorCode.MESSAGE_ERROR, reason))
            return
        meter = BodyMeter(expected) if expected is not None else None
        self._streams[stream_id] = H2Stream(recv_done=ended, meter=meter)
        out.append(RequestHeaders(stream_id, head, ended))

    def _answer_malformed(self, stream_id: int, reason: str, request_ended: bool) -> None:
        self._reject(stream_id, reason, request_ended)

    def _reject(self, stream_id: int, reason: str, request_ended: bool, status: int = 400) -> None:
        """Answer a malformed request with 400 (or 431) on its own stream; the connection lives
        on."""
        fields, body = conv.error_response(status, reason)
        with suppress(H2Error):  # the stream or the connection is gone already
            if self._conn.local_flow_control_window(stream_id) >= len(body):
                self._conn.send_headers(stream_id, fields)
                self._conn.send_data(stream_id, body, end_stream=True)
            else:
                self._conn.send_headers(stream_id, fields[:2], end_stream=True)
            if not request_ended:  # RFC 9113 section 8.1: stop the upload, without error
                self._conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)


class H2ClientAdapter(H2Adapter):
    """HTTP/2 client role: sends requests, emits Response* events.

    A response body that disagrees with its content-length, DATA on a response that has none
    (to HEAD, 204, 304) or a malformed content-length is an error of that stream only:
    RST_STREAM(PROTOCOL_ERROR) upstream and a ProtocolError(MESSAGE_ERROR) in place of the
    bytes or the ResponseEnd that would complete it (``_message_checks.BodyMeter``).
    """

    def __init__(
        self,
        *,
        initial_window: int = DEFAULT_INITIAL_WINDOW,
        max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE,
        connection_window: int | None = None,
    ) -> None:
        super().__init__(
            client_side=True,
            initial_window=initial_window,
            max_header_list_size=max_header_list_size,
            connection_window=connection_window,
            settings={SettingCodes.ENABLE_PUSH: 0},
            meter_bodies=True,
        )

    def send_request(self, head: RequestHead, end_stream: bool = False) -> int:
        """Queue a request head and return its stream id; raise if no stream is available."""
        if self.available_streams() <= 0:
            raise LocalProtocolError("no HTTP/2 stream available now", ErrorCode.REFUSED_STREAM)
        if head.method != b"CONNECT" and not head.path:
            raise LocalProtocolError("a request needs a path")
        fields = conv.request_fields(head)
        self._check_fields(fields)
        try:
            stream_id = self._conn.get_next_available_stream_id()
            self._conn.send_headers(stream_id, fields, end_stream=end_stream)
        except H2Error as exc:
            raise LocalProtocolError(f"cannot send the request: {exc}") from exc
        self._streams[stream_id] = H2Stream(
            send_done=end_stream, head_sent=True, method=head.method
        )
        return stream_id

    def available_streams(self) -> int:
        """Requests the connection accepts now: the server's MAX_CONCURRENT_STREAMS minus the
        streams we have open; 0 once either side sent GOAWAY or the connection failed."""
        if self._dead or self._goaway_received is not None or self._goaway_sent is not None:
            return 0
        limit = self._conn.remote_settings.max_concurrent_streams
        if not self._remote_settings_seen:
            limit = min(limit, _ASSUMED_MAX_STREAMS)
        highest = self._conn.highest_outbound_stream_id
        next_id = highest + 2 if highest else 1
        ids_left = max(0, (MAX_WINDOW - next_id) // 2 + 1)
        return max(0, min(limit - self._conn.open_outbound_streams, ids_left))

    _data_event = ResponseData
    _trailers_event = ResponseTrailers
    _end_event = ResponseEnd

    def _on_role_event(self, ev: h2e.Event, out: list[Event]) -> None:
        if not isinstance(ev, h2e.ResponseReceived | h2e.InformationalResponseReceived):
            return
        stream_id = ev.stream_id
        stream = self._streams.get(stream_id)
        if stream is None or stream.recv_done:
            return
        head = conv.response_head(ev.headers)
        if isinstance(head, str):
            self.reset_stream(stream_id, ErrorCode.PROTOCOL_ERROR)
            out.append(ProtocolError(stream_id, ErrorCode.MESSAGE_ERROR, head))
        elif isinstance(ev, h2e.InformationalResponseReceived):
            out.append(InformationalResponse(stream_id, head))
        else:
            ended = ev.stream_ended is not None
            problem = _meter_response(stream, head, ended)
            if problem is not None:  # a stream error: the siblings carry on
                self.reset_stream(stream_id, ErrorCode.PROTOCOL_ERROR)
                out.append(ProtocolError(stream_id, ErrorCode.MESSAGE_ERROR, problem))
                return
            stream.recv_done = ended
            out.append(ResponseHeaders(stream_id, head, ended))
            self._forget_if_done(stream_id, stream)


def _meter_response(stream: H2Stream, head: ResponseHead, ended: bool) -> str | None:
    """Give the stream the meter its final response's body is counted with (RFC 9113 8.1.1);
    why the response is malformed, or None.

    A response to HEAD, a 204 and a 304 have no body: any DATA is an error, and their
    content-length (the representation's) is not compared. A 2xx to CONNECT is a tunnel: its
    content-length is ignored (RFC 9110 section 8.6)."""
    length = declared_length(head.headers)
    if isinstance(length, str):
        return length
    if stream.method == b"HEAD" or head.status in _NO_CONTENT:
        stream.meter = BodyMeter(0, no_content=True)
    elif stream.method == b"CONNECT" and 200 <= head.status < 300:
        stream.meter = None
    elif length is not None:
        if ended and length:
            return f"content-length {length} on a response without a body"
        stream.meter = BodyMeter(length)
    return None
