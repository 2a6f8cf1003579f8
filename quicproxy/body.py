"""BodyChannel: a bounded body queue between two hops, crediting bytes back once they moved on."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from protocols.limits import DEFAULT_STREAM_BUFFER
from protocols.messages import Headers

__all__ = ["BodyChannel"]

DEFAULT_HIGH_WATER = DEFAULT_STREAM_BUFFER
DEFAULT_LOW_WATER = 64 * 1024


class BodyChannel:
    """One message body in flight: the receiving side feeds, the forwarding side reads and releases.

    Bytes count as buffered from ``feed`` until ``release``; the release callback returns credit to
    the sender (h2 WINDOW_UPDATE, h3 MAX_STREAM_DATA, h1 resume reading). ``above_high_water`` tells
    a sender without flow control (h1) to pause. The queue never holds a body whole: the sender's
    flow control or pause keeps it near ``high_water``.
    """

    def __init__(
        self,
        on_release: Callable[[int], None] | None = None,
        *,
        high_water: int = DEFAULT_HIGH_WATER,
        low_water: int = DEFAULT_LOW_WATER,
    ) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._on_release = on_release
        self.high_water = high_water
        self.low_water = low_water
        self.buffered = 0
        self.received = 0
        self.taken = 0
        self.trailers: Headers | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._limit = 0
        self._limit_error: BaseException | None = None

    def set_limit(self, limit: int, error: BaseException) -> None:
        """Fail the reader with ``error`` once more than ``limit`` bytes arrived (0: no limit);
        bytes beyond it are dropped and credited back at once."""
        self._limit = limit
        self._limit_error = error

    @property
    def ended(self) -> bool:
        """True once the sender signalled the end of the body."""
        return self._ended

    @property
    def finished(self) -> bool:
        """True once the end was signalled and every chunk was read."""
        return self._ended and not self._chunks

    @property
    def above_high_water(self) -> bool:
        """True while the unreleased bytes exceed the high-water mark."""
        return self.buffered > self.high_water

    def feed(self, data: bytes) -> None:
        """Queue a chunk from the sender."""
        if self._ended or self._error is not None or not data:
            return
        if self._limit and self.received + len(data) > self._limit:
            self.received += len(data)
            if self._on_release is not None:
                self._on_release(len(data))
            assert self._limit_error is not None
            self.abort(self._limit_error)
            return
        self._chunks.append(data)
        self.buffered += len(data)
        self.received += len(data)
        self._wake()

    def feed_trailers(self, trailers: Headers) -> None:
        """Record trailers; the end follows."""
        self.trailers = trailers

    def feed_end(self) -> None:
        """Mark the body complete."""
        self._ended = True
        self._wake()

    def abort(self, error: BaseException) -> None:
        """Fail the reader with ``error`` (stream reset, connection lost). A body that already
        ended is complete: its unread chunks still go out and its end stays clean."""
        if self._ended:
            return
        self._error = error
        self._wake()

    async def read(self) -> bytes | None:
        """The next chunk, or None at the end. Call ``release`` once the chunk moved on."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self.taken += len(chunk)
                return chunk
            if self._error is not None:
                raise self._error
            if self._ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def release(self, amount: int) -> None:
        """Credit ``amount`` bytes back to the sender: the next hop has accepted them."""
        self.buffered -= amount
        if self._on_release is not None and amount:
            self._on_release(amount)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
