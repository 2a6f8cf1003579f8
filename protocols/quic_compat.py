"""aioquic private state: send buffers, credit gating, probes; and the one check of all of it.

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

import aioquic
from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.h0.connection import H0Connection
from aioquic.h3 import connection as h3c
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, stream_is_unidirectional
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

from . import quic_recovery
from .quic_recovery import RECOVERY_PRIVATE_STATE

__all__ = [
    "TESTED_AIOQUIC_VERSIONS",
    "GatedQuicConnection",
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
            "_check_content_length",
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
