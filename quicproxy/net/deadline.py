"""One event-loop timer kept at a moving deadline (a QUIC connection's ``get_timer()``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["DeadlineTimer"]


class DeadlineTimer:
    """Calls ``on_expiry`` at the deadline last given to ``rearm``; re-arms only when it moves."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expiry: Callable[[], None]) -> None:
        self.loop = loop
        self.on_expiry = on_expiry
        self.deadline: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    def rearm(self, deadline: float | None) -> None:
        """Fire at ``deadline`` (a loop time), or never when it is None."""
        if deadline == self.deadline:
            return
        self.cancel()
        self.deadline = deadline
        if deadline is not None:
            self._handle = self.loop.call_at(deadline, self._fire)

    def cancel(self) -> None:
        """Forget the deadline."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self.deadline = None

    def _fire(self) -> None:
        self._handle = None
        self.deadline = None
        self.on_expiry()
