"""Per-connection flood budgets for the HTTP/2 and HTTP/3 adapters: Rapid Reset and idle frames.

Time-free on purpose (``protocols/`` reads no clock and TCP adapters get no ``now``): each budget
counts events, not events per second.

- Premature resets (CVE-2023-44487, "Rapid Reset"): streams the peer reset before our response
  on them completed. The connection is cut once ``premature >= max_premature_resets`` AND at
  least half of the streams it opened ended that way, so a browser that cancels a few of many
  streams is never cut however long the connection lives.
- Idle frames: frames that make us queue a reply or do no work (PING, SETTINGS, WINDOW_UPDATE,
  PRIORITY, empty DATA, resets of streams that are gone, unknown frame types, ...). More than
  ``max_control_frames`` of them in a row breaches; useful work in between (a new request,
  request body bytes, response bytes we sent) refills the budget, so a long download (the client
  sends WINDOW_UPDATEs as it reads) or a long upload never breaches.

The adapters feed the events and, on ``breach``, close the connection with ENHANCE_YOUR_CALM
(HTTP/2 GOAWAY) or H3_EXCESSIVE_LOAD (HTTP/3 CONNECTION_CLOSE).
"""

from __future__ import annotations

__all__ = ["FloodBudget", "field_section_size"]


def field_section_size(fields: list[tuple[bytes, bytes]]) -> int:
    """RFC 9110 section 5.4 / RFC 9113 section 6.5.2 size: name + value + 32 per field."""
    return sum(len(name) + len(value) + 32 for name, value in fields)


class FloodBudget:
    """The two counters of one connection; ``breach`` says why it must be cut (None: fine)."""

    __slots__ = ("_max_idle", "_max_premature", "breach", "idle", "opened", "premature")

    def __init__(self, *, max_premature_resets: int = 100, max_control_frames: int = 1000) -> None:
        if max_premature_resets <= 0 or max_control_frames <= 0:
            raise ValueError("flood budgets must be positive")
        self._max_premature = max_premature_resets
        self._max_idle = max_control_frames
        self.opened = 0  # streams the peer opened
        self.premature = 0  # of which the peer reset before our response completed
        self.idle = 0  # frames doing no work since the last useful work
        self.breach: str | None = None

    def stream_opened(self) -> None:
        """The peer opened a request stream (useful work too: it refills the idle budget)."""
        self.opened += 1
        self.idle = 0

    def premature_reset(self) -> str | None:
        """The peer reset a stream before our response on it completed; the breach, if any."""
        self.premature += 1
        if (
            self.breach is None
            and self.premature >= self._max_premature
            and self.premature * 2 >= self.opened
        ):
            self.breach = (
                f"{self.premature} of {self.opened} streams reset by the peer before their "
                "response completed (rapid reset)"
            )
        return self.breach

    def useful(self) -> None:
        """Request body bytes arrived or response bytes went out: the idle budget refills."""
        self.idle = 0

    def idle_frame(self, what: str) -> str | None:
        """A frame that did no work (``what`` names it); the breach, if any."""
        self.idle += 1
        if self.breach is None and self.idle > self._max_idle:
            self.breach = f"more than {self._max_idle} frames in a row did no work (last: {what})"
        return self.breach
