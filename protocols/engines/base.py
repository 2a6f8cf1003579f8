"""The interface every QUIC engine package offers (checked by mypy against each engine).

Only what an engine adds to its library's public API is listed; the rest (``QuicConnection``,
``H3Connection``, ``H0Connection``, the event classes) is aioquic's public API, which qh3
mirrors. An engine's ``__init__`` re-exports these names and assigns itself to an ``Engine``
variable under ``TYPE_CHECKING``, so mypy --strict reports any drift from this list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "CompatH3",
    "Engine",
    "EngineCompatError",
    "GatedConnection",
    "ServerConnection",
]


class EngineCompatError(RuntimeError):
    """The installed QUIC library is untested or lacks private state the engine relies on.

    The message is one line naming the installed and the tested versions.
    """


class GatedConnection(Protocol):
    """A QUIC connection whose receive credit grows only as its owner consumes data."""

    server_name: str | None

    def set_receive_window(self, stream_id: int, window: int) -> None:
        """Gate a stream: its limit becomes ``consumed + window`` (never lowered)."""

    def consumed(self, stream_id: int, amount: int) -> None:
        """Report ``amount`` more stream bytes as consumed."""

    def receive_window(self, stream_id: int) -> int | None:
        """The stream's advertised limit when it is gated, else None."""


class ServerConnection(GatedConnection, Protocol):
    """The server connection: gated, with ECN feedback and the server-only extensions."""

    address_validated_by_token: bool

    @property
    def address_validated(self) -> bool:
        """True once the client's current address is validated."""

    def host_connection_ids(self) -> list[bytes]:
        """Every connection ID this endpoint issued and has not retired."""


class CompatH3(Protocol):
    """What the HTTP/3 shim adds to the library's ``H3Connection``."""

    @property
    def failure(self) -> tuple[int, str] | None:
        """(code, reason) once the library hit a connection error and closed."""

    def expect_no_content(self, stream_id: int) -> None:
        """Client role: the response on the stream has no content (HEAD)."""

    def excessive_load(self, reason: str) -> None:
        """Close the connection with H3_EXCESSIVE_LOAD."""

    def buffered(self, stream_id: int) -> int:
        """Bytes of an incomplete frame held for the stream."""

    def blocked(self, stream_id: int) -> bool:
        """True while a HEADERS frame of the stream waits for QPACK encoder data."""

    def pending_headers_size(self, stream_id: int) -> int:
        """Declared size of a HEADERS frame still being buffered (0: none)."""

    def reject_stream(self, stream_id: int) -> None:
        """Drop the stream's remaining frames (its message was refused)."""

    def release_stream(self, stream_id: int) -> None:
        """Forget a stream our side finished or reset."""

    def send_goaway(self, identifier: int) -> None:
        """Queue a GOAWAY frame on our control stream."""


class Engine(Protocol):
    """The module-level names of an engine package (``protocols.engines.<name>``)."""

    @property
    def NAME(self) -> str:
        """The QUIC library's distribution name, e.g. ``"aioquic"``."""

    @property
    def TESTED_VERSIONS(self) -> frozenset[str]:
        """Library versions the engine's private-state use was checked against."""

    @property
    def GatedQuicConnection(self) -> Callable[..., GatedConnection]:
        """The receive-gated connection class (both roles)."""

    @property
    def EcnQuicConnection(self) -> Callable[..., GatedConnection]:
        """The gated connection class that also reports ECN counts (both roles)."""

    @property
    def ServerQuicConnection(self) -> Callable[..., ServerConnection]:
        """The server connection class."""

    @property
    def CompatH3Connection(self) -> Callable[..., CompatH3]:
        """The HTTP/3 connection class (both roles)."""

    @property
    def StreamMessageError(self) -> type[object]:
        """The H3 event for a malformed message on one stream (a stream error)."""

    def check_compat(self) -> None:
        """Raise ``EngineCompatError`` unless the installed library is tested and complete."""

    def stream_send_buffered(self, quic: Any, stream_id: int) -> int:
        """Bytes written to the stream but not yet acknowledged (0: unknown or closed)."""

    def unacknowledged_data(self, quic: Any) -> bool:
        """True while some stream holds unacknowledged data or FIN."""

    def peer_bidi_stream_credit(self, quic: Any) -> int:
        """How many more bidirectional streams the peer lets us open now."""

    def handshake_complete(self, quic: Any) -> bool:
        """True once the handshake finished."""

    def smoothed_rtt(self, quic: Any) -> float:
        """The smoothed round-trip time in seconds (0.0 before the first sample)."""

    def connection_version(self, quic: Any) -> int | None:
        """The QUIC version in use, or None before it is known."""

    def h0_buffered(self, h0: Any, stream_id: int) -> int:
        """Bytes of an incomplete HTTP/0.9 request line held for a stream."""

    def h0_release(self, h0: Any, stream_id: int) -> None:
        """Forget a finished HTTP/0.9 stream."""
