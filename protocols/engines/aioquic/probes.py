"""Read-only probes of aioquic state it has no public API for: send buffers, credit, RTT, H0.

Each function reads private state listed in ``PRIVATE_STATE`` (checked by
``compat.check_compat``): the send buffer a stream still holds, the peer's stream credit, the
handshake flag, the smoothed RTT, the version, and H0Connection's per-stream buffers.
"""

from __future__ import annotations

from aioquic.h0.connection import H0Connection
from aioquic.quic.connection import QuicConnection

__all__ = [
    "PRIVATE_STATE",
    "connection_version",
    "h0_buffered",
    "h0_release",
    "handshake_complete",
    "packets_lost",
    "peer_bidi_stream_credit",
    "smoothed_rtt",
    "stream_send_buffered",
    "unacknowledged_data",
]

PRIVATE_STATE: dict[str, tuple[str, ...]] = {
    "QuicConnection": (
        "_streams",
        "_remote_max_streams_bidi",
        "_handshake_complete",
        "_loss",
        "_version",
    ),
    "QuicPacketRecovery": ("_rtt_smoothed",),
    "QuicStreamSender": ("_buffer", "_buffer_fin", "_reset_error_code", "is_finished"),
    "QuicStream": ("sender",),
    "H0Connection": ("_buffer", "_headers_received"),
}
"""The private aioquic attributes used here, by the object that holds them (see compat)."""


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


def packets_lost(quic: QuicConnection) -> int:
    """Packets this connection's loss detection declared lost (see ``recovery``)."""
    return int(getattr(quic._loss, "packets_lost", 0))


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
