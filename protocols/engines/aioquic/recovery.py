"""Probe timeouts that reach every lost packet: aioquic's PTO choice of what to retransmit, fixed.

On a probe timeout (PTO) aioquic's ``QuicPacketRecovery.reschedule_data`` declares lost every
outstanding packet that carries a CRYPTO frame, in every packet number space, and only when
there is none, the oldest ack-eliciting packet. In the 1-RTT space a server's first packet after
the handshake carries CRYPTO too: the TLS NewSessionTicket, beside HANDSHAKE_DONE and the first
bytes of a response. While that packet (or its latest copy) goes unacknowledged, every PTO sends
the same CRYPTO and the same response bytes again, and the rest of the response, in later
packets, is never probed: when those were lost and the client's ACKs are lost too, the client
waits until it idles out with a truncated body. ``ProbeRecovery`` keeps CRYPTO first where it
speeds up the handshake (the Initial and Handshake spaces, RFC 9002 section 6.2.4) and treats
1-RTT CRYPTO like any other data there: each PTO retransmits the oldest outstanding
ack-eliciting packet, so successive PTOs go through every outstanding packet in turn.

Relies on aioquic's private recovery state (``PRIVATE_STATE``, checked by
``compat.check_compat``; a unit test pins the aioquic version).
"""

from __future__ import annotations

from collections.abc import Iterable

from aioquic.quic.packet_builder import QuicSentPacket
from aioquic.quic.recovery import QuicPacketRecovery, QuicPacketSpace

__all__ = ["PRIVATE_STATE", "ProbeRecovery", "install"]

PRIVATE_STATE: dict[str, tuple[str, ...]] = {
    "QuicPacketRecovery": (
        "reschedule_data",
        "spaces",
        "handshake_confirmed",
        "_on_packets_lost",
        "_send_probe",
        "_logger",
    ),
}
"""The QuicPacketRecovery attributes this module relies on (see ``compat.check_compat``)."""


class ProbeRecovery(QuicPacketRecovery):
    """aioquic's loss recovery whose PTO retransmits CRYPTO first only in the handshake spaces;
    it also counts the packets its loss detection declares lost (``packets_lost``)."""

    packets_lost = 0  # until the first loss (install() changes the class of a live object)

    def _on_packets_lost(
        self,
        *,
        congestion_event: bool = True,
        now: float,
        packets: Iterable[QuicSentPacket],
        persistent_congestion: bool = False,
        space: QuicPacketSpace,
    ) -> None:
        packets = tuple(packets)
        if congestion_event:  # detected loss; a PTO's re-sends (congestion_event False) are not
            self.packets_lost += len(packets)
        super()._on_packets_lost(
            congestion_event=congestion_event,
            now=now,
            packets=packets,
            persistent_congestion=persistent_congestion,
            space=space,
        )

    def reschedule_data(self, *, now: float, speed_up_handshake: bool = False) -> None:
        """Declare the data of a PTO's probe lost (so it is sent again) and ask for a probe.

        CRYPTO data of the Initial and Handshake spaces first; otherwise (and never when
        ``speed_up_handshake``, which is about the handshake only) the oldest ack-eliciting
        packet of any space that may be probed, 1-RTT CRYPTO included. Declaring packets lost
        on a PTO is aioquic's way (its delivery handlers expect ACKED or LOST), not a
        congestion event.
        """
        crypto_scheduled = False
        for space in self.spaces:
            if space.is_application_data:
                continue
            packets = tuple(p for p in space.sent_packets.values() if p.is_crypto_packet)
            if packets:
                self._lost(now, packets, space, "CRYPTO data of")
                crypto_scheduled = True
        if not crypto_scheduled and not speed_up_handshake:
            oldest = self._oldest_ack_eliciting()
            if oldest is not None:
                self._lost(now, (oldest[0],), oldest[1], "data of")
        self._send_probe()

    def _oldest_ack_eliciting(self) -> tuple[QuicSentPacket, QuicPacketSpace] | None:
        """The earliest-sent ack-eliciting packet still outstanding in a space that may be
        probed (application data only once the handshake is confirmed, RFC 9002 6.2.1)."""
        oldest: tuple[QuicSentPacket, QuicPacketSpace] | None = None
        for space in self.spaces:
            if space.is_application_data and not self.handshake_confirmed:
                continue
            for packet in space.sent_packets.values():  # in packet number (= sending) order
                if packet.is_ack_eliciting:
                    sent = packet.sent_time or 0.0
                    if oldest is None or sent < (oldest[0].sent_time or 0.0):
                        oldest = (packet, space)
                    break
        return oldest

    def _lost(
        self,
        now: float,
        packets: tuple[QuicSentPacket, ...],
        space: QuicPacketSpace,
        what: str,
    ) -> None:
        if self._logger is not None:
            numbers = ", ".join(str(packet.packet_number) for packet in packets)
            self._logger.debug("PTO: %s packets %s scheduled for retransmission", what, numbers)
        self._on_packets_lost(congestion_event=False, now=now, packets=packets, space=space)


def install(recovery: QuicPacketRecovery) -> None:
    """Make a connection's ``_loss`` (made by ``QuicConnection.__init__``) a ProbeRecovery.

    Only the method that chooses a PTO's retransmissions differs, so the object keeps its
    state and only changes class.
    """
    if type(recovery) is QuicPacketRecovery:
        recovery.__class__ = ProbeRecovery
