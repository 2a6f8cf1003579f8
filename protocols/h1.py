"""HTTP/1.1 adapters over h11, behind strict parsing: one request cycle at a time, as events."""

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
from .h1_base import (
    NO_BODY_STATUSES,
    REASONS,
    SLACK,
    H1Base,
    declares_body,
    error_fields,
    error_response,
    h11_headers,
)
from .h1_framing import H1Scanner
from .limits import ConnectionLimits
from .messages import Headers, RequestHead, ResponseHead, get_header

__all__ = ["H1ClientAdapter", "H1ServerAdapter"]


class H1ServerAdapter(H1Base):
    """Server role. Stream ids count request cycles (1, 2, 3, ...) on one connection.

    Every byte passes the strict rules of ``h1_framing``/``h1_rules`` before h11 parses it; a
    refused request is answered (400, 414, 431, 501 or 505, ``Connection: close``) unless its
    response started, and nothing of it is emitted. ``max_requests`` (0: unlimited) requests
    are served per connection, the last response carrying ``Connection: close``.
    """

    def __init__(
        self,
        *,
        scheme: bytes = b"https",
        max_header_size: int = 64 * 1024,
        max_request_line: int = 8 * 1024,
        max_header_count: int = 100,
        max_requests: int = 10_000,
    ) -> None:
        super().__init__(h11.SERVER, max(max_header_size, max_request_line) + SLACK)
        self._scan = H1Scanner(
            server=True,
            max_line=max_request_line,
            max_head=max_header_size,
            max_fields=max_header_count,
        )
        self._scheme = scheme
        self._max_requests = max_requests
        self._request_method = b""
        self._body_expected = False
        self._dead = False  # we answered an error ourselves: h11 neither parses nor sends more
        self._ignore_input = False  # the connection closes after our response: read no more

    @classmethod
    def from_limits(cls, limits: ConnectionLimits, *, scheme: bytes = b"https") -> H1ServerAdapter:
        """The adapter with the sizes of ``limits``."""
        return cls(
            scheme=scheme,
            max_header_size=limits.max_header_size,
            max_request_line=limits.max_request_line,
            max_header_count=limits.max_header_count,
            max_requests=limits.max_requests_per_connection,
        )

    @property
    def reading_head(self) -> bool:
        """True while part of a request head has arrived and it is not complete (also a
        pipelined one behind a request in progress)."""
        return not (self._dead or self._ignore_input) and self._scan.reading_head

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the socket; ``b""`` means end of file."""
        if self._dead or self._ignore_input:
            return [] if data else self._closed_event("client closed the connection")
        clean = self._scan.feed(data) if data else b""
        try:
            if clean or not data:
                self._conn.receive_data(clean)
        except RuntimeError:  # data after EOF or in a closed state
            return self._closed_event("connection closed")
        return self._drain()

    def next_events(self) -> list[Event]:
        """Events that became ready once our response ended (pipelined requests), or a close."""
        events = [] if self._ignore_input else self._drain()
        answering = not self._dead and self._conn.our_state in (h11.SEND_RESPONSE, h11.SEND_BODY)
        if self._reset or (self.must_close and not answering):
            events.extend(self._closed_event("connection closes after the response"))
        return events

    def _drain(self) -> list[Event]:
        events: list[Event] = []
        if self._dead or self._conn.their_state is h11.ERROR:
            return events  # the error was reported once already
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                events.append(self._refuse(exc.error_status_hint, str(exc)))
                return events
            if event is h11.NEED_DATA or event is h11.PAUSED:
                self._report_violation(events)
                return events
            if isinstance(event, h11.Request):
                events.append(self._request(event))
            elif isinstance(event, h11.Data):
                events.append(RequestData(self._stream_id, bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                if event.headers:
                    events.append(RequestTrailers(self._stream_id, h11_headers(event.headers)))
                if self._body_expected:
                    events.append(RequestEnd(self._stream_id))
                self._maybe_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                events.extend(self._closed_event("client closed the connection"))
                return events

    def _report_violation(self, events: list[Event]) -> None:
        """Refuse the request the scanner stopped at once h11 has caught up with it: at once
        when its head went out already, else when the requests before it were answered."""
        violation = self._scan.violation
        if violation is None:
            return
        current = self._scan.violation_message <= self._stream_id
        fresh = self._conn.their_state is h11.IDLE and self._conn.our_state is h11.IDLE
        if current or fresh:
            events.append(self._refuse(violation.status, violation.rule))

    def _request(self, event: h11.Request) -> RequestHeaders:
        self._stream_id += 1
        if self._max_requests and self._stream_id >= self._max_requests:
            self._must_close = True
        headers = h11_headers(event.headers)
        target = bytes(event.target)
        host = get_header(headers, b"host")
        method = self._request_method = bytes(event.method)
        scheme = self._scheme
        if method == b"CONNECT":
            host, target = target, b""
        elif target[:1] not in (b"/", b"*"):  # absolute-form; h1_rules checked it
            scheme, _, rest = target.partition(b"://")
            scheme = scheme.lower()
            cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
            host = rest[:cut] if host is None else host
            target = rest[cut:]
            target = target if target[:1] == b"/" else b"/" + target
        self._body_expected = declares_body(headers)
        if self._conn.client_is_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[]))
        head = RequestHead(
            method=method,
            scheme=scheme,
            authority=host or b"",
            path=target,
            headers=[(k, v) for k, v in headers if k != b"host"],
            http_version=bytes(event.http_version),
        )
        return RequestHeaders(self._stream_id, head, end_stream=not self._body_expected)

    def _refuse(self, status: int, rule: str) -> ProtocolError:
        """Answer a refused request ourselves (h11 is bypassed) unless a response started."""
        self._must_close = True
        if not self._dead and self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            reason = REASONS.get(status, b"Error").decode()
            self._out.append(error_response(status, f"{reason}: {rule}\n".encode()))
        self._dead = True
        code = ErrorCode.HEADERS_TOO_LARGE if status == 431 else ErrorCode.PROTOCOL_ERROR
        return ProtocolError(None, code, rule)

    def send_error(self, status: int, message: str) -> None:
        """Queue a complete plain-text error response with ``Connection: close`` unless a
        response started for the current request; either way the connection closes after it
        and no further byte is read (408 for timeouts, 413)."""
        self._must_close = True
        self._ignore_input = True
        if self._dead:
            return
        body = f"{message}\n".encode("utf-8", "replace")
        state = self._conn.our_state
        if state is h11.SEND_RESPONSE and self._conn.their_state is not h11.ERROR:
            reason = REASONS.get(status, b"Error")
            self._send(h11.Response(status_code=status, headers=error_fields(body), reason=reason))
            self._send(h11.Data(data=body))
            self._send(h11.EndOfMessage())
        elif state in (h11.IDLE, h11.SEND_RESPONSE):
            self._out.append(error_response(status, body))
            self._dead = True

    def send_response(self, stream_id: int, head: ResponseHead, end_stream: bool = False) -> None:
        """Queue a final response head for the current request."""
        if self._dead or stream_id != self._stream_id:
            return
        if self._conn.our_state is not h11.SEND_RESPONSE:
            return
        headers = list(head.headers)
        has_body = self._request_method != b"HEAD" and head.status not in NO_BODY_STATUSES
        has_length = get_header(headers, b"content-length") is not None
        if end_stream and has_body and not has_length:
            headers.append((b"content-length", b"0"))
            has_length = True
        if self._conn.their_state is h11.SEND_BODY:
            self._must_close = True  # answered before the request ended: its rest is not read
        if self._must_close:
            headers.append((b"connection", b"close"))
        self._chunked = has_body and not has_length and self._conn.their_http_version == b"1.1"
        self._send(h11.Response(status_code=head.status, headers=headers, reason=head.reason))
        if end_stream:
            self.end_stream(stream_id)

    def send_informational(self, stream_id: int, head: ResponseHead) -> None:
        """Queue a 1xx response (not 101: upgrades are not proxied)."""
        writable = stream_id == self._stream_id and self._conn.our_state is h11.SEND_RESPONSE
        if writable and not self._dead and 100 <= head.status < 200 and head.status != 101:
            self._send(h11.InformationalResponse(status_code=head.status, headers=head.headers))

    def _active(self, stream_id: int) -> bool:
        return not self._dead and super()._active(stream_id)

    def _after_message_sent(self) -> None:
        if self.must_close or self._conn.their_state is h11.SEND_BODY:
            self._must_close = True
            self._ignore_input = True  # never parse what still arrives as a new request
        self._maybe_next_cycle()

    def _maybe_next_cycle(self) -> None:
        both_done = self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE
        if both_done and not self._must_close:
            self._conn.start_next_cycle()


class H1ClientAdapter(H1Base):
    """Client role: one request at a time; reusable once both messages completed cleanly.

    Responses pass the strict rules first: a malformed or ambiguous one is a ProtocolError
    (nothing of it is emitted when it is caught in the read that brought its head) and the
    connection is never reused; bytes after a complete response only make it unusable.
    """

    def __init__(self, *, max_header_size: int = 64 * 1024, max_header_count: int = 1000) -> None:
        super().__init__(h11.CLIENT, max_header_size + SLACK)
        self._scan = H1Scanner(
            server=False,
            max_line=max_header_size,
            max_head=max_header_size,
            max_fields=max_header_count,
        )
        self._end_reported = False
        self._method = b""
        self._refused = False

    def available_streams(self) -> int:
        """1 when idle and reusable, else 0."""
        idle = self._conn.our_state is h11.IDLE and self._conn.their_state is h11.IDLE
        return 1 if idle and not self._must_close else 0

    def send_request(self, head: RequestHead, end_stream: bool = False) -> int:
        """Queue a request; adds Host and chunked framing where the body length is unknown."""
        self._stream_id += 1
        self._method = head.method
        self._scan.expect_response(head.method)
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
        if self._refused:
            return [] if data else self._closed_event("upstream closed the connection")
        clean = self._scan.feed(data) if data else b""
        try:
            if clean or not data:
                self._conn.receive_data(clean)
        except RuntimeError:
            return self._closed_event("upstream closed the connection")
        events = self._drain()
        violation = self._scan.violation
        if violation is not None:
            self._refused = self._must_close = True
            failed = any(isinstance(e, ProtocolError | ConnectionClosed) for e in events)
            if not failed:  # a response already delivered stays delivered (its body ended)
                events.append(ProtocolError(None, ErrorCode.PROTOCOL_ERROR, violation.rule))
        return events

    def _drain(self) -> list[Event]:
        events: list[Event] = []
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._must_close = self._refused = True
                events.append(ProtocolError(None, ErrorCode.PROTOCOL_ERROR, str(exc)))
                return events
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return events
            sid = self._stream_id
            if isinstance(event, h11.InformationalResponse):
                head = ResponseHead(event.status_code, h11_headers(event.headers))
                events.append(InformationalResponse(sid, head))
            elif isinstance(event, h11.Response):
                events.append(self._response(event))
            elif isinstance(event, h11.Data):
                events.append(ResponseData(sid, bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                if event.headers:
                    events.append(ResponseTrailers(sid, h11_headers(event.headers)))
                if not self._end_reported:
                    events.append(ResponseEnd(sid))
                self._end_reported = True
                self._maybe_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self._must_close = True
                events.extend(self._closed_event("upstream closed the connection"))
                return events

    def _response(self, event: h11.Response) -> ResponseHeaders:
        headers = h11_headers(event.headers)
        no_body = (
            self._method == b"HEAD"
            or event.status_code in NO_BODY_STATUSES
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
