"""hq-interop (HTTP/0.9 over QUIC) server adapter over aioquic's H0Connection."""

from __future__ import annotations

from aioquic.h0.connection import H0Connection
from aioquic.h3.events import H3Event, HeadersReceived
from aioquic.quic import events as qe
from aioquic.quic.connection import QuicConnection

from . import events as ev
from .engines.aioquic import StreamMessageError, h0_buffered, h0_release
from .errors import ErrorCode
from .h3 import QuicStreamAdapter, StreamState
from .limits import DEFAULT_STREAM_BUFFER
from .messages import Headers, RequestHead, ResponseHead, validate_field_value

__all__ = ["HqServerAdapter"]


class HqServerAdapter(QuicStreamAdapter):
    """Server role for hq-interop (HTTP/0.9 over QUIC) over aioquic's H0Connection.

    ``GET /path`` becomes a ev.RequestHeaders with ``end_stream=True``; the response has no head,
    so ``send_response`` and ``send_informational`` send nothing and the body goes out raw.
    """

    def __init__(
        self,
        quic: QuicConnection,
        *,
        stream_buffer: int = DEFAULT_STREAM_BUFFER,
        max_request_line: int = 8192,
    ) -> None:
        super().__init__(quic, stream_buffer)
        self._h0 = H0Connection(quic)
        self._max_line = max_request_line

    def _framing_events(self, event: qe.QuicEvent) -> list[H3Event]:
        try:
            return self._h0.handle_event(event)
        except ValueError:  # H0Connection cannot split the request line
            assert isinstance(event, qe.StreamDataReceived)
            return [StreamMessageError(event.stream_id, "malformed request line")]

    def _held(self, stream_id: int) -> int:
        return h0_buffered(self._h0, stream_id)

    def _release(self, stream_id: int) -> None:
        h0_release(self._h0, stream_id)

    def _on_framing_event(self, event: H3Event, out: list[ev.Event]) -> None:
        if not isinstance(event, HeadersReceived | StreamMessageError):
            return  # DataReceived: HTTP/0.9 requests have no body
        st = self._streams.get(event.stream_id)
        if st is None or st.ignored or st.headers:
            return
        if isinstance(event, HeadersReceived):
            pseudo = dict(event.headers)
            method, path = pseudo.get(b":method", b""), pseudo.get(b":path", b"")
            token = method.isalpha() and method.isupper()
            if token and path and validate_field_value(path) and b" " not in path:
                st.headers = st.visible = st.msg_done = True
                head = RequestHead(method, b"https", b"", path, [], b"0.9")
                out.append(ev.RequestHeaders(event.stream_id, head, True))
                return
            reason = "malformed request line"
        else:
            reason = event.reason
        self._refuse(event.stream_id, st, ErrorCode.MESSAGE_ERROR, reason, out)

    def _check_pending(self, stream_id: int, st: StreamState, out: list[ev.Event]) -> None:
        if not st.headers and not st.ignored and self._held(stream_id) > self._max_line:
            self._refuse(stream_id, st, ErrorCode.HEADERS_TOO_LARGE, "request line too long", out)

    def send_response(self, stream_id: int, head: ResponseHead, end_stream: bool = False) -> None:
        """HTTP/0.9 has no response head: only ``end_stream`` has an effect."""
        if end_stream:
            self.end_stream(stream_id)

    def send_informational(self, stream_id: int, head: ResponseHead) -> None:
        """HTTP/0.9 has no interim responses: nothing is sent."""

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue raw body bytes."""
        send = self.quic.send_stream_data
        if data or end_stream:
            self._send(stream_id, lambda: send(stream_id, data, end_stream), end_stream)

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        """HTTP/0.9 has no trailers: they are dropped and the stream ends."""
        self.end_stream(stream_id)

    def end_stream(self, stream_id: int) -> None:
        """End the response body (FIN)."""
        self.send_data(stream_id, b"", end_stream=True)
