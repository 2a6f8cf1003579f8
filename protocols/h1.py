"""HTTP/1.1 adapters over h11: one request cycle at a time, as normalized stream events."""

from __future__ import annotations

import h11

from .errors import ErrorCode
from .events import (
    ConnectionClosed,
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
from .messages import Headers, RequestHead, ResponseHead, get_header

__all__ = ["H1ClientAdapter", "H1ServerAdapter"]

_NO_BODY_STATUSES = frozenset({204, 304})
_SEND_WINDOW = 256 * 1024


def _h11_headers(headers: list[tuple[bytes, bytes]] | h11._headers.Headers) -> Headers:
    return [(bytes(name), bytes(value)) for name, value in headers]


def _declares_body(headers: Headers) -> bool:
    """True when request framing headers announce a body (RFC 9112 section 6.3)."""
    if get_header(headers, b"transfer-encoding") is not None:
        return True
    length = get_header(headers, b"content-length")
    return length is not None and length.strip() != b"0"


def _error_response(status: int, text: str) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection."""
    body = text.encode("utf-8", "replace")
    reason = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}.get(status, b"Error")
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body)
    )


class _H1Base:
    """What both roles share: the h11 connection, the outgoing buffer and body sending."""

    def __init__(self, role: type[h11.CLIENT] | type[h11.SERVER], max_header_size: int) -> None:
        self._conn = h11.Connection(role, max_incomplete_event_size=max_header_size)
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


class H1ServerAdapter(_H1Base):
    """Server role. Stream ids count request cycles (1, 2, 3, ...) on one connection."""

    def __init__(self, *, scheme: bytes = b"https", max_header_size: int = 64 * 1024) -> None:
        super().__init__(h11.SERVER, max_header_size)
        self._scheme = scheme
        self._request_method = b""
        self._body_expected = False

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the socket; ``b""`` means end of file."""
        try:
            self._conn.receive_data(data)
        except RuntimeError:  # data after EOF or in a closed state
            return self._closed_event("connection closed")
        return self._drain()

    def next_events(self) -> list[Event]:
        """Events that became ready once our response ended (pipelined requests), or a close."""
        events = self._drain()
        answering = self._conn.our_state in (h11.SEND_RESPONSE, h11.SEND_BODY)
        if self._reset or (self.must_close and not answering):
            events.extend(self._closed_event("connection closes after the response"))
        return events

    def _drain(self) -> list[Event]:
        events: list[Event] = []
        if self._conn.their_state is h11.ERROR:
            return events  # the error was reported once already
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                events.append(self._reject(exc))
                return events
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return events
            if isinstance(event, h11.Request):
                events.append(self._request(event))
            elif isinstance(event, h11.Data):
                events.append(RequestData(self._stream_id, bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                if event.headers:
                    events.append(RequestTrailers(self._stream_id, _h11_headers(event.headers)))
                if self._body_expected:
                    events.append(RequestEnd(self._stream_id))
                self._maybe_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                events.extend(self._closed_event("client closed the connection"))
                return events

    def _request(self, event: h11.Request) -> RequestHeaders:
        self._stream_id += 1
        headers = _h11_headers(event.headers)
        target = bytes(event.target)
        authority = get_header(headers, b"host") or b""
        scheme = self._scheme
        if target.startswith((b"http://", b"https://")):
            scheme, _, rest = target.partition(b"://")
            authority, slash, path = rest.partition(b"/")
            target = slash + path or b"/"
        self._request_method = bytes(event.method)
        self._body_expected = _declares_body(headers)
        if self._conn.client_is_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[]))
        head = RequestHead(
            method=self._request_method,
            scheme=scheme,
            authority=authority,
            path=target,
            headers=[(k, v) for k, v in headers if k != b"host"],
            http_version=bytes(event.http_version),
        )
        return RequestHeaders(self._stream_id, head, end_stream=not self._body_expected)

    def _reject(self, exc: h11.RemoteProtocolError) -> ProtocolError:
        status = exc.error_status_hint
        code = ErrorCode.HEADERS_TOO_LARGE if status == 431 else ErrorCode.PROTOCOL_ERROR
        self._must_close = True
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            # h11 is in its ERROR state now and sends nothing more: write the answer ourselves.
            self._out.append(_error_response(status, f"bad request: {exc}\n"))
        return ProtocolError(None, code, str(exc))

    def send_response(self, stream_id: int, head: ResponseHead, end_stream: bool = False) -> None:
        """Queue a final response head for the current request."""
        if stream_id != self._stream_id or self._conn.our_state is not h11.SEND_RESPONSE:
            return
        headers = list(head.headers)
        has_body = self._request_method != b"HEAD" and head.status not in _NO_BODY_STATUSES
        has_length = get_header(headers, b"content-length") is not None
        if end_stream and has_body and not has_length:
            headers.append((b"content-length", b"0"))
            has_length = True
        if self._must_close:
            headers.append((b"connection", b"close"))
        self._chunked = has_body and not has_length and self._conn.their_http_version == b"1.1"
        self._send(h11.Response(status_code=head.status, headers=headers, reason=head.reason))
        if end_stream:
            self.end_stream(stream_id)

    def send_informational(self, stream_id: int, head: ResponseHead) -> None:
        """Queue a 1xx response (not 101: upgrades are not proxied)."""
        writable = stream_id == self._stream_id and self._conn.our_state is h11.SEND_RESPONSE
        if writable and 100 <= head.status < 200 and head.status != 101:
            self._send(h11.InformationalResponse(status_code=head.status, headers=head.headers))

    def _after_message_sent(self) -> None:
        self._maybe_next_cycle()

    def _maybe_next_cycle(self) -> None:
        both_done = self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE
        if both_done and not self._must_close:
            self._conn.start_next_cycle()


class H1ClientAdapter(_H1Base):
    """Client role: one request at a time; reusable once both messages completed cleanly."""

    def __init__(self, *, max_header_size: int = 64 * 1024) -> None:
        super().__init__(h11.CLIENT, max_header_size)
        self._end_reported = False
        self._method = b""

    def available_streams(self) -> int:
        """1 when idle and reusable, else 0."""
        idle = self._conn.our_state is h11.IDLE and self._conn.their_state is h11.IDLE
        return 1 if idle and not self._must_close else 0

    def send_request(self, head: RequestHead, end_stream: bool = False) -> int:
        """Queue a request; adds Host and chunked framing where the body length is unknown."""
        self._stream_id += 1
        self._method = head.method
        headers: Headers = [(b"host", head.authority), *head.headers]
        has_length = get_header(headers, b"content-length") is not None
        self._chunked = not end_stream and not has_length
        if self._chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        self._end_reported = False
        self._send(h11.Request(method=head.method, target=head.path, headers=headers))
        if end_stream:
            self.end_stream(self._stream_id)
        return self._stream_id

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the socket; ``b""`` means end of file."""
        try:
            self._conn.receive_data(data)
        except RuntimeError:
            return self._closed_event("upstream closed the connection")
        events: list[Event] = []
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._must_close = True
                events.append(ProtocolError(None, ErrorCode.PROTOCOL_ERROR, str(exc)))
                return events
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return events
            sid = self._stream_id
            if isinstance(event, h11.InformationalResponse):
                head = ResponseHead(event.status_code, _h11_headers(event.headers))
                events.append(InformationalResponse(sid, head))
            elif isinstance(event, h11.Response):
                events.append(self._response(event))
            elif isinstance(event, h11.Data):
                events.append(ResponseData(sid, bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                if event.headers:
                    events.append(ResponseTrailers(sid, _h11_headers(event.headers)))
                if not self._end_reported:
                    events.append(ResponseEnd(sid))
                self._end_reported = True
                self._maybe_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self._must_close = True
                events.extend(self._closed_event("upstream closed the connection"))
                return events

    def _response(self, event: h11.Response) -> ResponseHeaders:
        headers = _h11_headers(event.headers)
        no_body = (
            self._method == b"HEAD"
            or event.status_code in _NO_BODY_STATUSES
            or (get_header(headers, b"content-length") or b"").strip() == b"0"
        )
        self._end_reported = no_body
        head = ResponseHead(event.status_code, headers, bytes(event.reason))
        return ResponseHeaders(self._stream_id, head, end_stream=no_body)

    def next_events(self) -> list[Event]:
        """Nothing becomes ready by sending in the client role."""
        return []

    def _after_message_sent(self) -> None:
        self._maybe_next_cycle()

    def _maybe_next_cycle(self) -> None:
        if self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE:
            self._conn.start_next_cycle()
