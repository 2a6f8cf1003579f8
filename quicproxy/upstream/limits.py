"""UpstreamLimits: the sizes the upstream connector dials with, taken from ``[limits]``."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.limits import DEFAULT_STREAM_BUFFER

from ..config import LimitsConfig

__all__ = ["UpstreamLimits"]


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    """Per-connection sizes for upstream connections of every protocol."""

    stream_buffer: int = DEFAULT_STREAM_BUFFER  # per-stream body buffer and receive window (h2, h3)
    quic_max_datagram_size: int = 1350  # UDP payload of the QUIC packets sent upstream
    peer_cache_size: int = 1024  # peers whose QUIC session ticket and token are remembered

    @classmethod
    def from_config(cls, limits: LimitsConfig | None) -> UpstreamLimits:
        """The limits of ``[limits]`` (the defaults when None)."""
        if limits is None:
            return cls()
        return cls(
            stream_buffer=limits.stream_buffer,
            quic_max_datagram_size=limits.quic_max_datagram_size,
        )
