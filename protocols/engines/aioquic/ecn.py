"""ECN feedback for aioquic (RFC 9000 section 13.4), which neither counts nor reports ECN.

``EcnQuicConnection.receive_datagram(data, addr, now, ecn)`` counts the datagram's packets per
packet number space by the ECN codepoint of its IP header, and ACKs of a space that has seen
marks go out as ACK_ECN frames carrying the ECT(0), ECT(1) and CE counts, so that a peer that
marks its packets can validate ECN on the path and react to congestion marks. Marking our own
packets is the socket's business (``quicproxy.net.udp``). Relies on aioquic's private state,
listed in ``PRIVATE_STATE`` for ``compat.check_compat``.
"""

from __future__ import annotations

from typing import Any

from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.buffer import UINT_VAR_MAX_SIZE
from aioquic.quic.connection import ACK_FRAME_CAPACITY, NetworkAddress
from aioquic.quic.packet import (
    QuicFrameType,
    QuicPacketType,
    pull_quic_header,
    push_ack_frame,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace

from .gating import GatedQuicConnection

__all__ = ["PRIVATE_STATE", "EcnQuicConnection"]

PRIVATE_STATE: dict[str, tuple[str, ...]] = {
    "QuicConnection": (
        "_write_ack_frame",
        "_on_ack_delivery",
        "_write_ping_frame",
        "_spaces",
        "_local_ack_delay_exponent",
        "_configuration",
        "_quic_logger",
    ),
}
"""The private aioquic attributes used here, by the object that holds them (see compat)."""

_ECN_FIELDS = 3 * UINT_VAR_MAX_SIZE
_INDEX = {0b10: 0, 0b01: 1, 0b11: 2}  # ECT(0), ECT(1), CE -> position in the ACK_ECN frame
_EPOCH = {
    QuicPacketType.INITIAL: tls.Epoch.INITIAL,
    QuicPacketType.HANDSHAKE: tls.Epoch.HANDSHAKE,
    QuicPacketType.ZERO_RTT: tls.Epoch.ONE_RTT,  # 0-RTT and 1-RTT share a number space
    QuicPacketType.ONE_RTT: tls.Epoch.ONE_RTT,
}


class EcnQuicConnection(GatedQuicConnection):
    """A gated connection that counts received ECN marks and reports them in ACK_ECN frames."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ecn_counts: dict[tls.Epoch, list[int]] = {}

    def receive_datagram(self, data: bytes, addr: NetworkAddress, now: float, ecn: int = 0) -> None:
        """Feed one datagram, with the ECN bits of the IP header it came in."""
        if ecn in _INDEX:
            self._count(data, _INDEX[ecn])
        super().receive_datagram(data, addr, now)

    def _count(self, data: bytes, index: int) -> None:
        """One count per QUIC packet of the datagram (coalesced packets count each)."""
        buf = Buffer(data=data)
        cid_length = self._configuration.connection_id_length
        while not buf.eof():
            start = buf.tell()
            try:
                header = pull_quic_header(buf, host_cid_length=cid_length)
            except ValueError:
                return
            epoch = _EPOCH.get(header.packet_type)
            if epoch is None:
                return  # Retry or Version Negotiation: not numbered
            counts = self.ecn_counts.setdefault(epoch, [0, 0, 0])
            counts[index] += 1
            if header.packet_type == QuicPacketType.ONE_RTT or header.packet_length <= 0:
                return  # a short header runs to the end of the datagram
            buf.seek(min(start + header.packet_length, len(data)))

    def _write_ack_frame(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, now: float
    ) -> None:
        counts = next(
            (self.ecn_counts.get(epoch) for epoch, s in self._spaces.items() if s is space),
            None,
        )
        if counts is None or space.largest_received_time is None:
            super()._write_ack_frame(builder=builder, space=space, now=now)
            return
        ack_delay = now - space.largest_received_time
        encoded_delay = int(ack_delay * 1000000) >> self._local_ack_delay_exponent
        buf = builder.start_frame(
            QuicFrameType.ACK_ECN,
            capacity=ACK_FRAME_CAPACITY + _ECN_FIELDS,
            handler=self._on_ack_delivery,
            handler_args=(space, space.largest_received_packet),
        )
        ranges = push_ack_frame(
            buf, space.ack_queue, encoded_delay, builder.remaining_buffer_space - _ECN_FIELDS
        )
        for count in counts:
            buf.push_uint_var(count)
        space.ack_at = None
        if self._quic_logger is not None and builder.quic_logger_frames is not None:
            frame = self._quic_logger.encode_ack_frame(
                ranges=list(space.ack_queue)[-ranges:], delay=ack_delay
            )
            frame.update(ect0=counts[0], ect1=counts[1], ce=counts[2])
            builder.quic_logger_frames.append(frame)
        if ranges > 1 and builder.packet_number % 8 == 0:
            self._write_ping_frame(builder, comment="ACK-of-ACK trigger")
