"""aioquic's H3Connection, adapted: stream-scoped message errors, field-section limits checked
before decoding, idle-frame budgets, GOAWAY sending and the client's bodiless responses.

It touches aioquic's private H3 state (``PRIVATE_STATE``, checked by ``compat.check_compat``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pylsqpack
from aioquic.buffer import encode_uint_var
from aioquic.h3 import connection as h3c
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import H3Event, Headers
from aioquic.quic.connection import QuicConnection

from ... import _qpack_bounds
from ...flood import FloodBudget

__all__ = ["CompatH3Connection", "StreamMessageError"]

PRIVATE_STATE: dict[str, tuple[str, ...]] = {
    "QuicConnection": ("_close_event",),
    "h3.connection": ("MessageError", "FrameType", "HeadersState", "encode_frame"),
    "H3Connection": (
        "_handle_request_or_push_frame",
        "_check_content_length",
        "_handle_request_or_push_end",
        "_decode_headers",
        "_init_connection",
        "_get_local_settings",
        "_check_control_frame_type",
        "_check_request_or_push_frame_type",
        "_stream",
        "_is_done",
        "_is_client",
        "_quic",
        "_local_control_stream_id",
        "_local_decoder_stream_id",
        "_max_table_capacity",
        "_blocked_streams",
        "_decoder",
    ),
    "H3Stream": (
        "buffer",
        "frame_type",
        "frame_size",
        "push_id",
        "headers_recv_state",
        "expected_content_length",
        "blocked",
        "sending_ended",
        "is_ended",
        "stream_id",
    ),
}
"""The private aioquic attributes used here, by the object that holds them (see compat)."""


@dataclass
class StreamMessageError(H3Event):
    """A request or response on one stream is malformed (a stream error, RFC 9114 4.1.2).

    ``too_large``: its header section is over the field count or size limits (431)."""

    stream_id: int
    reason: str
    headers_delivered: bool = False
    too_large: bool = False


class _ExcessiveLoad(h3c.ProtocolError):
    error_code = h3c.ErrorCode.H3_EXCESSIVE_LOAD


class _SectionTooLarge(h3c.MessageError):
    pass


class CompatH3Connection(H3Connection):
    """aioquic's H3Connection with message errors scoped to their stream and a GOAWAY sender.

    aioquic closes the whole connection on a malformed request (H3_MESSAGE_ERROR); RFC 9114
    section 4.1.2 makes it a stream error, so one bad request must not kill its neighbours. A
    ``StreamMessageError`` event is emitted instead and the stream's later frames are dropped.
    A request without ``:authority`` but with ``host`` gets ``:authority`` from it (RFC 9114 4.3.1
    allows either; aioquic insists on ``:authority``).

    Server role limits: a request header section with more than ``max_field_count`` field lines
    (+ room for the pseudo-headers) or whose decoded-size bound (``_qpack_bounds``) exceeds
    ``_BOUND_FACTOR`` times ``max_field_section_size`` is refused before pylsqpack decodes it
    (QPACK bomb), and a refused stream's header blocks are cancelled (RFC 9204 section 4.4.2),
    never decoded. ``budget`` (``protocols.flood``) sees every frame header: control-stream
    frames after SETTINGS, unknown frame types and empty DATA are idle frames, HEADERS and DATA
    with payload useful ones; a breach closes the connection with H3_EXCESSIVE_LOAD.
    """

    _BOUND_FACTOR = 16
    _PSEUDO_ROOM = 8

    def __init__(
        self,
        quic: QuicConnection,
        *,
        qpack_max_table_capacity: int = 4096,
        qpack_blocked_streams: int = 16,
        max_field_section_size: int | None = None,
        max_field_count: int | None = None,
        budget: FloodBudget | None = None,
    ) -> None:
        self._qpack_settings = (qpack_max_table_capacity, qpack_blocked_streams)
        self._max_field_section = max_field_section_size
        self._max_field_count = max_field_count
        self._budget = budget
        super().__init__(quic)
        self._rejected: set[int] = set()
        self._no_content: set[int] = set()  # client role: requests whose response has no body
        self._control_frames = 0

    def _check_content_length(self, stream: Any) -> None:
        if stream.stream_id not in self._no_content:
            super()._check_content_length(stream)

    def expect_no_content(self, stream_id: int) -> None:
        """Client role: the response on ``stream_id`` has no content (a HEAD request; 204 and
        304 are seen by status), so its content-length is not checked against DATA."""
        self._no_content.add(stream_id)

    def excessive_load(self, reason: str) -> None:
        """Close the connection with H3_EXCESSIVE_LOAD (a budget breach seen by the owner)."""
        if not self._is_done:
            self._is_done = True
            self._quic.close(error_code=_ExcessiveLoad.error_code, reason_phrase=reason)

    def _idle(self, what: str) -> None:
        if self._budget is not None and self._budget.idle_frame(what) is not None:
            raise _ExcessiveLoad(self._budget.breach or what)

    def _check_control_frame_type(self, frame_type: int) -> None:
        super()._check_control_frame_type(frame_type)
        self._control_frames += 1
        if self._control_frames > 1:  # the first one is the mandatory SETTINGS
            self._idle(f"control frame {frame_type:#x}")

    def _check_request_or_push_frame_type(self, frame_type: int, stream: Any) -> None:
        super()._check_request_or_push_frame_type(frame_type, stream)
        if self._budget is None:
            return
        if frame_type == h3c.FrameType.HEADERS or (
            frame_type == h3c.FrameType.DATA and stream.frame_size
        ):
            self._budget.useful()
        elif frame_type == h3c.FrameType.DATA:
            self._idle("empty DATA")
        elif frame_type != h3c.FrameType.PUSH_PROMISE:
            self._idle(f"frame type {frame_type:#x}")

    def _init_connection(self) -> None:
        # Runs inside H3Connection.__init__, before the SETTINGS frame is sent.
        self._max_table_capacity, self._blocked_streams = self._qpack_settings
        self._decoder = pylsqpack.Decoder(self._max_table_capacity, self._blocked_streams)
        super()._init_connection()

    def _get_local_settings(self) -> dict[int, int]:
        settings: dict[int, int] = super()._get_local_settings()
        if self._max_field_section is not None:
            settings[h3c.Setting.MAX_FIELD_SECTION_SIZE] = self._max_field_section
        return settings

    @property
    def failure(self) -> tuple[int, str] | None:
        """(code, reason) once aioquic hit a connection error and closed the QUIC connection."""
        if not self._is_done:
            return None
        event = self._quic._close_event
        if event is None:
            return (h3c.ErrorCode.H3_INTERNAL_ERROR, "")
        return (event.error_code, event.reason_phrase)

    def buffered(self, stream_id: int) -> int:
        """Bytes of an incomplete frame aioquic holds for the stream."""
        stream = self._stream.get(stream_id)
        return 0 if stream is None else len(stream.buffer)

    def blocked(self, stream_id: int) -> bool:
        """True while a HEADERS frame of the stream waits for QPACK encoder-stream data."""
        stream = self._stream.get(stream_id)
        return stream is not None and bool(stream.blocked)

    def pending_headers_size(self, stream_id: int) -> int:
        """Declared size of a HEADERS frame still being buffered on the stream (0: none)."""
        stream = self._stream.get(stream_id)
        if stream is None or stream.frame_type != h3c.FrameType.HEADERS:
            return 0
        return int(stream.frame_size or 0)

    def reject_stream(self, stream_id: int) -> None:
        """Drop the stream's remaining frames quietly (its message was refused); its header
        blocks are cancelled, not decoded."""
        if stream_id not in self._rejected:
            self._cancel_decoding(stream_id)
        self._rejected.add(stream_id)
        stream = self._stream.get(stream_id)
        if stream is not None:
            stream.expected_content_length = None
            if stream.headers_recv_state == h3c.HeadersState.INITIAL:
                stream.headers_recv_state = h3c.HeadersState.AFTER_HEADERS

    def release_stream(self, stream_id: int) -> None:
        """Forget a stream our side finished or reset outside aioquic's knowledge."""
        self._rejected.discard(stream_id)
        self._no_content.discard(stream_id)
        stream = self._stream.get(stream_id)
        if stream is not None:
            stream.sending_ended = True
            if stream.is_ended():
                self._stream.pop(stream_id, None)

    def send_goaway(self, identifier: int) -> None:
        """Queue a GOAWAY frame on our control stream (aioquic has no public API for it)."""
        control = self._local_control_stream_id
        if control is not None:
            frame = h3c.encode_frame(h3c.FrameType.GOAWAY, encode_uint_var(identifier))
            self._quic.send_stream_data(control, frame)

    def _cancel_decoding(self, stream_id: int) -> None:
        """Tell the peer's encoder that no header block of the stream will be decoded."""
        with contextlib.suppress(Exception):  # never decoded anything: nothing to cancel
            decoder = self._decoder.cancel_stream(stream_id)
            if decoder and self._local_decoder_stream_id is not None:
                self._quic.send_stream_data(self._local_decoder_stream_id, decoder)

    def _check_section(self, frame_data: bytes) -> None:
        """Refuse a request header section over the limits before it is decoded."""
        limit, count = self._max_field_section, self._max_field_count
        bounds = _qpack_bounds.section_bounds(frame_data, self._max_table_capacity)
        if limit is None or count is None or bounds is None:
            return
        lines, size = bounds
        if lines > count + self._PSEUDO_ROOM or size > limit * self._BOUND_FACTOR:
            raise _SectionTooLarge(f"header section over {count} fields or {limit} bytes")

    def _decode_headers(self, stream_id: int, frame_data: bytes | None) -> Headers:
        if frame_data is not None and not self._is_client:
            self._check_section(frame_data)
        headers: Headers = super()._decode_headers(stream_id, frame_data)
        stream = self._stream.get(stream_id)
        if self._is_client and any(k == b":status" and v in (b"204", b"304") for k, v in headers):
            self._no_content.add(stream_id)
        if (
            not self._is_client
            and stream is not None
            and stream.push_id is None
            and stream.headers_recv_state == h3c.HeadersState.INITIAL
            and not any(name == b":authority" for name, _ in headers)
        ):
            for name, value in headers:
                if name == b"host":
                    return [(b":authority", value), *headers]
        return headers

    def _handle_request_or_push_frame(
        self, frame_type: int, frame_data: bytes | None, stream: Any, stream_ended: bool
    ) -> list[H3Event]:
        stream_id: int = stream.stream_id
        if stream_id in self._rejected:
            return []  # its header blocks were cancelled (reject_stream): QPACK stays in step
        delivered = stream.headers_recv_state != h3c.HeadersState.INITIAL
        try:
            events: list[H3Event] = super()._handle_request_or_push_frame(
                frame_type, frame_data, stream, stream_ended
            )
        except h3c.MessageError as exc:
            if stream.push_id is not None:
                raise
            self.reject_stream(stream_id)
            reason = exc.reason_phrase or "malformed"
            too_large = isinstance(exc, _SectionTooLarge)
            return [StreamMessageError(stream_id, reason, delivered, too_large)]
        return events

    def _handle_request_or_push_end(self, stream: Any) -> list[H3Event]:
        stream_id: int = stream.stream_id
        if stream_id in self._rejected:
            return []
        try:
            events: list[H3Event] = super()._handle_request_or_push_end(stream)
        except h3c.MessageError as exc:
            if stream.push_id is not None:
                raise
            self.reject_stream(stream_id)
            return [StreamMessageError(stream_id, exc.reason_phrase or "malformed", True)]
        return events
