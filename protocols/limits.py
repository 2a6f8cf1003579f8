"""The per-connection limits every adapter takes, in one object (``[limits]`` builds it).

``quicproxy.config.LimitsConfig`` extends :class:`ConnectionLimits` with the timeouts and sizes
that only the I/O layer needs, so the object read from the config file is the one handed to the
adapters; the defaults below are written nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "DEFAULT_STREAM_BUFFER", "ConnectionLimits"]

DEFAULT_STREAM_BUFFER = 256 * 1024
"""Per-stream body buffer, receive window and send high water (bytes)."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Sizes and budgets of one client connection, whatever its protocol."""

    stream_buffer: int = DEFAULT_STREAM_BUFFER
    max_concurrent_streams: int = 100  # h2 SETTINGS / h3 bidirectional stream credit
    max_request_line: int = 8 * 1024  # HTTP/1.1 request line; beyond it 414
    max_header_size: int = 64 * 1024  # header section (h1 bytes, h2/h3 decoded); beyond it 431
    max_header_count: int = 100  # header fields per request; beyond it 431
    max_requests_per_connection: int = 10_000  # then Connection: close / GOAWAY; 0 = no limit
    max_premature_resets: int = 100  # h2/h3 Rapid Reset budget (streams reset before answered)
    max_control_frames: int = 1000  # h2/h3 frames doing no work in a row (PING, SETTINGS, ...)


DEFAULT_LIMITS = ConnectionLimits()
