"""The only module that touches aioquic's private state: send buffers, credit gating, h3 internals.

Everything here depends on aioquic implementation details. ``check_compat`` verifies that each
private attribute or method used still exists, and a unit test pins ``aioquic.__version__`` to
``TESTED_AIOQUIC_VERSIONS`` so that an upgrade fails loudly instead of silently breaking the
backpressure rules of DESIGN.md.

Receive gating: aioquic doubles a stream's MAX_STREAM_DATA (and the connection's MAX_DATA) as
soon as the peer has sent half of it, whether or not the application has read anything. A
``GatedQuicConnection`` instead advertises ``consumed + window`` for registered streams and
``connection consumed + connection window`` for the connection, where "consumed" only grows when
the owner reports it, so a slow next hop bounds the bytes a peer can push at us.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioquic
import pylsqpack
from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.buffer import encode_uint_var
from aioquic.h0.connection import H0Connection
from aioquic.h3 import connection as h3c
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import H3Event, Headers
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, stream_is_unidirectional
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

from . import _qpack_bounds, quic_recovery
from .flood import FloodBudget
from .quic_recovery import RECOVERY_PRIVATE_STATE

__all__ = [
    "TESTED_AIOQUIC_VERSIONS",
    "CompatH3Connection",
    "GatedQuicConnection",
    "StreamMessageError",
    "check_compat",
    "connection_version",
    "h0_buffered",
    "h0_release",
    "peer_bidi_stream_credit",
    "smoothed_rtt",
    "stream_send_buffered",
    "unacknowledged_data",
]

TESTED_AIOQUIC_VERSIONS = frozenset({"1.7.2"})
"""aioquic releases whose private state this module was checked against."""


def stream_send_buffered(quic: QuicConnection, stream_id: int) -> int:
    """Bytes written to the stream but not yet acknowledged by the peer (0: unknown or closed)."""
    stream = quic._streams.get(stream_id)
    if stream is None:
        return 0
    sender = stream.sender
    if sender.is_finished or sender._reset_error_code is not None:
        return 0
    return len(sender._buffer)


def unacknowledged_data(quic: QuicConnection) -> bool:
    """True while some stream holds sent-but-unacknowledged data or an unacknowledged FIN.

    aioquic's ``close()`` discards everything still queued, so a graceful close waits for this
    to turn False.
    """
    for stream in quic._streams.values():
        sender = stream.sender
        if sender.is_finished or sender._reset_error_code is not None:
            continue
        if sender._buffer or sender._buffer_fin is not None:
            return True
    return False


def peer_bidi_stream_credit(quic: QuicConnection) -> int:
    """How many more bidirectional streams the peer lets us open now."""
    opened = quic.get_next_available_stream_id() // 4
    return max(0, quic._remote_max_streams_bidi - opened)


def handshake_complete(quic: QuicConnection) -> bool:
    """True once the handshake finished; requests before that arrived as 0-RTT early data."""
    return bool(quic._handshake_complete)


def smoothed_rtt(quic: QuicConnection) -> float:
    """The smoothed round-trip time in seconds (0.0 before the first sample)."""
    return float(quic._loss._rtt_smoothed)


def connection_version(quic: QuicConnection) -> int | None:
    """The QUIC version in use, or None before it is known."""
    return quic._version


def h0_buffered(h0: H0Connection, stream_id: int) -> int:
    """Bytes of an incomplete HTTP/0.9 request line that H0Connection holds for a stream."""
    return len(h0._buffer.get(stream_id, b""))


def h0_release(h0: H0Connection, stream_id: int) -> None:
    """Forget a finished stream (H0Connection keeps per-stream entries forever)."""
    h0._buffer.pop(stream_id, None)
    h0._headers_received.pop(stream_id, None)


@dataclass
class _Gate:
    window: int
    consumed: int = 0


class GatedQuicConnection(QuicConnection):
    """A QuicConnection whose receive credit only grows as the owner consumes data.

    ``stream_window``: when set, every bidirectional stream is gated with that window and the
    initial per-stream limits advertised in the transport parameters become that window.
    ``connection_window``: when set, MAX_DATA is gated to "consumed over all streams + window"
    (bytes of ungated streams and of finished gated streams count as consumed), and the initial
    MAX_DATA becomes that window. Unregistered streams (h3 control / QPACK) keep aioquic's growth.
    Probe timeouts retransmit as ``quic_recovery.ProbeRecovery`` says (every lost range is sent
    again, not only the packet that carried the session ticket).
    """

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        original_destination_connection_id: bytes | None = None,
        retry_source_connection_id: bytes | None = None,
        session_ticket_fetcher: tls.SessionTicketFetcher | None = None,
        session_ticket_handler: tls.SessionTicketHandler | None = None,
        token_handler: Callable[[bytes], None] | None = None,
        stream_window: int | None = None,
        connection_window: int | None = None,
    ) -> None:
        super().__init__(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
            session_ticket_fetcher=session_ticket_fetcher,
            session_ticket_handler=session_ticket_handler,
            token_handler=token_handler,
        )
        quic_recovery.install(self._loss)
        self._gates: dict[int, _Gate] = {}
        self._stream_window = stream_window
        self._connection_window = connection_window
        self._conn_key: tuple[int, int] | None = None
        self._conn_target = 0
        self._gate_version = 0
        self.server_name: str | None = None
        """The SNI the client sent (server role), known once the ClientHello was processed."""
        if stream_window is not None:
            self._local_max_stream_data_bidi_local = stream_window
            self._local_max_stream_data_bidi_remote = stream_window
        if connection_window is not None:
            self._local_max_data.value = connection_window
            self._local_max_data.sent = connection_window

    def set_receive_window(self, stream_id: int, window: int) -> None:
        """Gate a stream: its MAX_STREAM_DATA becomes ``consumed + window`` (never lowered)."""
        gate = self._gates.get(stream_id)
        if gate is None:
            self._gates[stream_id] = _Gate(window)
        else:
            gate.window = window
        self._gate_version += 1

    def consumed(self, stream_id: int, amount: int) -> None:
        """Report ``amount`` more stream bytes as consumed; credit follows on the next send."""
        gate = self._gates.get(stream_id)
        stream = self._streams.get(stream_id)
        open_stream = stream is not None and not stream.receiver.is_finished
        if gate is None and open_stream and self._auto_gated(stream_id):
            gate = self._gates[stream_id] = _Gate(self._stream_window or 0)
        if gate is not None and amount > 0:
            gate.consumed += amount
            self._gate_version += 1

    def receive_window(self, stream_id: int) -> int | None:
        """The stream's current advertised limit when it is gated, else None (for tests)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream_id not in self._gates:
            return None
        return stream.max_stream_data_local

    def _auto_gated(self, stream_id: int) -> bool:
        return self._stream_window is not None and not stream_is_unidirectional(stream_id)

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if self._is_client:
            return
        original = self.tls._server_handle_hello

        def handle_hello(input_buf: Buffer, initial_buf: Buffer, handshake_buf: Buffer) -> None:
            start = input_buf.tell()
            # A broken ClientHello is reported to the peer by the real parser below.
            with contextlib.suppress(Exception):
                self.server_name = tls.pull_client_hello(input_buf).server_name
            input_buf.seek(start)
            original(input_buf, initial_buf, handshake_buf)

        setattr(self.tls, "_server_handle_hello", handle_hello)  # noqa: B010

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        stream_id = stream.stream_id
        gate = None if stream_id is None else self._gates.get(stream_id)
        finished = stream.receiver.is_finished
        if gate is None and stream_id is not None and not finished and self._auto_gated(stream_id):
            gate = self._gates[stream_id] = _Gate(self._stream_window or 0)
        if gate is None or stream_id is None:
            super()._write_stream_limits(builder=builder, space=space, stream=stream)
            return
        if finished:
            # Everything up to the final size arrived or the stream was reset: no more credit.
            del self._gates[stream_id]
            self._gate_version += 1
            return
        target = gate.consumed + gate.window
        current = stream.max_stream_data_local
        if target - current >= max(1, gate.window // 4) or (
            target > current and stream.receiver.highest_offset >= current
        ):
            stream.max_stream_data_local = target
        # aioquic doubles the limit when highest_offset * 2 exceeds it; hide the offset so only
        # the frame writing (and retransmission of a lost MAX_STREAM_DATA) remains.
        saved = stream.receiver.highest_offset
        stream.receiver.highest_offset = 0
        try:
            super()._write_stream_limits(builder=builder, space=space, stream=stream)
        finally:
            stream.receiver.highest_offset = saved

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        if self._connection_window is None:
            super()._write_connection_limits(builder=builder, space=space)
            return
        limit = self._local_max_data
        key = (limit.used, self._gate_version)
        if self._conn_key != key:
            self._conn_key = key
            self._conn_target = self._connection_consumed() + self._connection_window
        target = self._conn_target
        if target - limit.value >= max(1, self._connection_window // 4) or (
            target > limit.value and limit.used >= limit.value
        ):
            limit.value = target
        # aioquic doubles MAX_DATA when used * 2 exceeds it; hide ``used`` during the call.
        saved = limit.used
        limit.used = 0
        try:
            super()._write_connection_limits(builder=builder, space=space)
        finally:
            limit.used = saved

    def _connection_consumed(self) -> int:
        outstanding = 0
        for stream_id in list(self._gates):
            stream = self._streams.get(stream_id)
            if stream is None:
                del self._gates[stream_id]
                continue
            outstanding += max(0, stream.receiver.highest_offset - self._gates[stream_id].consumed)
        return self._local_max_data.used - outstanding


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
        self._control_frames = 0

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


def _missing(obj: object, names: list[str]) -> list[str]:
    kind = obj.__name__ if isinstance(obj, type) else type(obj).__name__
    return [f"{kind}.{name}" for name in names if not hasattr(obj, name)]


def check_compat() -> None:
    """Raise RuntimeError naming every private aioquic attribute this module needs but lacks."""
    missing: list[str] = []
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"])
    quic = QuicConnection(configuration=config)
    missing += _missing(
        quic,
        [
            "_streams",
            "_remote_max_streams_bidi",
            "_local_max_data",
            "_local_max_stream_data_bidi_local",
            "_local_max_stream_data_bidi_remote",
            "_loss",
            "_version",
            "_is_client",
            "_close_event",
            "_handshake_complete",
            "_write_stream_limits",
            "_write_connection_limits",
            "_initialize",
        ],
    )
    if hasattr(quic, "_loss"):
        missing += _missing(quic._loss, ["_rtt_smoothed", "reschedule_data", "spaces"])
        missing += _missing(quic._loss, ["handshake_confirmed", *RECOVERY_PRIVATE_STATE])
    if hasattr(quic, "_local_max_data"):
        missing += _missing(quic._local_max_data, ["used", "value", "sent"])
    stream = QuicStream(stream_id=0, max_stream_data_local=1, max_stream_data_remote=1)
    missing += _missing(stream, ["max_stream_data_local", "receiver", "sender"])
    missing += _missing(stream.receiver, ["highest_offset", "is_finished"])
    missing += _missing(
        stream.sender, ["_buffer", "_buffer_fin", "_reset_error_code", "is_finished"]
    )
    missing += _missing(tls.Context, ["_server_handle_hello"])
    missing += _missing(tls, ["pull_client_hello"])
    missing += _missing(
        h3c.H3Connection,
        [
            "_handle_request_or_push_frame",
            "_handle_request_or_push_end",
            "_decode_headers",
            "_init_connection",
            "_get_local_settings",
            "_check_control_frame_type",
            "_check_request_or_push_frame_type",
        ],
    )
    missing += _missing(h3c, ["MessageError", "FrameType", "HeadersState", "encode_frame"])
    h3 = h3c.H3Connection(quic)
    missing += _missing(
        h3,
        [
            "_stream",
            "_is_done",
            "_is_client",
            "_local_control_stream_id",
            "_local_decoder_stream_id",
            "_max_table_capacity",
            "_blocked_streams",
            "_decoder",
        ],
    )
    from .quic_ecn import ECN_PRIVATE_STATE  # these modules import this one
    from .quic_server_ext import SERVER_PRIVATE_STATE

    missing += _missing(quic, SERVER_PRIVATE_STATE + ECN_PRIVATE_STATE)
    missing += _missing(
        h3c.H3Stream(0),
        [
            "buffer",
            "frame_type",
            "frame_size",
            "push_id",
            "headers_recv_state",
            "expected_content_length",
            "blocked",
            "sending_ended",
            "is_ended",
        ],
    )
    missing += _missing(H0Connection(quic), ["_buffer", "_headers_received"])
    if missing:
        raise RuntimeError(
            f"aioquic {aioquic.__version__} lacks private state quicproxy relies on: "
            + ", ".join(missing)
            + f" (tested with {sorted(TESTED_AIOQUIC_VERSIONS)})"
        )
