"""TcpDriver: a ConnectionDriver over a TCP/TLS byte stream, for the h1 and h2 adapters."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from protocols.base import StreamSender, TcpAdapter
from protocols.errors import ErrorCode
from protocols.events import ConnectionClosed
from protocols.limits import DEFAULT_STREAM_BUFFER

from .errors import ErrorSource
from .net.tcp import ByteStream
from .streamio import ConnectionDriver, StreamIO

__all__ = ["TcpDriver"]

T_co = TypeVar("T_co", bound=TcpAdapter, covariant=True)


class TcpDriver(ConnectionDriver[T_co]):
    """Feeds socket bytes to the adapter and writes its output; closes after ``idle_timeout``
    seconds without an open stream. Received bytes do not count as activity (a client that
    trickles bytes or PINGs holds no connection open); only the end of a stream does. Reading
    pauses over a stream's high water when the adapter says so (``pauses_reading_on_buffer``:
    h1, which has no flow control)."""

    def __init__(
        self,
        stream: ByteStream,
        adapter: T_co,
        *,
        peer_side: ErrorSource,
        write_timeout: float,
        idle_timeout: float,
        stream_buffer: int = DEFAULT_STREAM_BUFFER,
    ) -> None:
        super().__init__(
            adapter,
            peer_side=peer_side,
            write_timeout=write_timeout,
            stream_buffer=stream_buffer,
        )
        self.pause_on_buffer = adapter.pauses_reading_on_buffer
        self.stream = stream
        self.idle_timeout = idle_timeout
        self.last_activity = self.loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._arm_idle_timer(idle_timeout)

    # -- Receiver callbacks -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.handle_events(self.adapter.receive_data(data))

    def eof_received(self) -> None:
        self.handle_events(self.adapter.receive_data(b""))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.connection_failed(f"connection lost: {exc}" if exc else "connection closed")
        self.on_lost()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self.wake_writers()

    # -- ConnectionDriver ---------------------------------------------------------------------

    def flush(self) -> None:
        self.stream.write(self.adapter.data_to_send())
        events = self.adapter.next_events()
        if events:
            self.handle_events(events)

    def close_transport(self) -> None:
        self.stream.close()

    def set_reading(self, enabled: bool) -> None:
        self.stream.set_reading(enabled)

    def on_lost(self) -> None:
        """The socket is gone; subclasses drop their references."""

    def stream_closed(self, stream: StreamIO[StreamSender]) -> None:
        """A stream ended: the idle period starts again."""
        self.last_activity = self.loop.time()

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """Say goodbye at the protocol level (GOAWAY / Connection: close), then close when idle."""
        self.adapter.close(code)
        self.going_away = True
        self.flush()
        if not self.streams:
            self.handle_events([ConnectionClosed(code, "closing")])

    def _arm_idle_timer(self, delay: float) -> None:
        self._idle_timer = self.loop.call_later(max(delay, 0.05), self._check_idle)

    def _check_idle(self) -> None:
        if self.closed:
            return
        idle_for = self.loop.time() - self.last_activity
        if not self.streams and idle_for >= self.idle_timeout:
            self.close()
            self.close_transport()
            return
        busy = bool(self.streams)
        self._arm_idle_timer(self.idle_timeout if busy else self.idle_timeout - idle_for)
