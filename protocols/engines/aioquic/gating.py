"""Receive-credit gating for aioquic: MAX_STREAM_DATA and MAX_DATA follow what was consumed.

aioquic doubles a stream's MAX_STREAM_DATA (and the connection's MAX_DATA) as soon as the peer
has sent half of it, whether or not the application has read anything. A
``GatedQuicConnection`` instead advertises ``consumed + window`` for registered streams and
``connection consumed + connection window`` for the connection, where "consumed" only grows when
the owner reports it, so a slow next hop bounds the bytes a peer can push at us. It also
records the client's SNI (server role) and installs ``recovery.ProbeRecovery``.

Relies on aioquic's private state (``PRIVATE_STATE``, checked by ``compat.check_compat``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, stream_is_unidirectional
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

from . import recovery

__all__ = ["PRIVATE_STATE", "GatedQuicConnection"]

PRIVATE_STATE: dict[str, tuple[str, ...]] = {
    "QuicConnection": (
        "_streams",
        "_local_max_data",
        "_local_max_stream_data_bidi_local",
        "_local_max_stream_data_bidi_remote",
        "_loss",
        "_is_client",
        "_write_stream_limits",
        "_write_connection_limits",
        "_initialize",
    ),
    "Limit": ("used", "value", "sent"),
    "QuicStream": ("max_stream_data_local", "receiver", "sender"),
    "QuicStreamReceiver": ("highest_offset", "is_finished"),
    "tls.Context": ("_server_handle_hello",),
    "tls": ("pull_client_hello",),
}
"""The private aioquic attributes used here, by the object that holds them (see compat)."""


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
    Probe timeouts retransmit as ``recovery.ProbeRecovery`` says (every lost range is sent
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
        recovery.install(self._loss)
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
