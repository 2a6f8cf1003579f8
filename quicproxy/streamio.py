"""Drives a protocols/ adapter: events into per-stream channels, async sends with backpressure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from protocols.base import ClientAdapter, ServerAdapter, StreamSender
from protocols.errors import ErrorCode, LocalProtocolError
from protocols.events import (
    CapacityAvailable,
    ConnectionClosed,
    Event,
    GoAway,
    InformationalResponse,
    ProtocolError,
    RequestData,
    RequestEnd,
    RequestHeaders,
    RequestTrailers,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    ResponseTrailers,
    StreamReset,
)
from protocols.limits import DEFAULT_STREAM_BUFFER
from protocols.messages import Headers, RequestHead, ResponseHead

from .body import BodyChannel
from .errors import ErrorKind, ErrorSource, ProxyError

__all__ = ["ClientStream", "ConnectionDriver", "ServerStream", "StreamIO"]

STOP_RECEIVING_DELAY = 0.5  # seconds between a complete early response and the reset after it

# The adapter a driver runs (protocols.base). Covariant: a driver or stream over
# ``H1ServerAdapter`` is one over ``ServerAdapter``; the adapter never changes once set.
A_co = TypeVar("A_co", bound=StreamSender, covariant=True)


class StreamIO(Generic[A_co]):
    """One HTTP exchange on a driven connection, and the only writer of its stream.

    The incoming message's body lands in ``body``; a client-role stream's response head resolves
    ``response``. Sends wait for flow-control and transport capacity, never buffering past it.
    Response heads go through ``send_head`` / ``send_informational`` (server-role streams only:
    mypy refuses them on a ``StreamIO`` over a client adapter).
    """

    def __init__(self, driver: ConnectionDriver[A_co], stream_id: int) -> None:
        self.driver = driver
        self.stream_id = stream_id
        self.body = BodyChannel(self._credit, high_water=driver.stream_buffer)
        self.response: asyncio.Future[ResponseHead] = driver.loop.create_future()
        self.informational: Callable[[ResponseHead], None] | None = None
        self.on_peer_gone: Callable[[], object] | None = None
        self.error: ProxyError | None = None
        self.bytes_sent = 0
        self.local_ended = False

    def _credit(self, amount: int) -> None:
        self.driver.credit(self.stream_id, amount)

    def fail(self, error: ProxyError) -> None:
        """The stream is gone: wake every reader and writer with ``error``."""
        if self.error is None:
            self.error = error
        self.body.abort(error)
        if not self.response.done():
            self.response.set_exception(error)
            self.response.exception()  # mark retrieved: nobody may be waiting for it
        self.driver.wake_writers()  # a sender waiting for capacity learns the stream is gone

    def peer_failed(self, error: ProxyError) -> None:
        """The peer reset the stream, broke the protocol or left: fail it and tell the owner
        (``on_peer_gone``, called once), who stops the work done for it."""
        self.fail(error)
        callback, self.on_peer_gone = self.on_peer_gone, None
        if callback is not None:
            callback()

    def send_head(
        self: StreamIO[ServerAdapter], head: ResponseHead, end_stream: bool = False
    ) -> None:
        """Send the final response head; raises ProxyError when the stream is gone."""
        self.check_open()
        self.driver.adapter.send_response(self.stream_id, head, end_stream)
        self.driver.schedule_flush()
        if end_stream:
            self.local_ended = True

    def send_informational(self: StreamIO[ServerAdapter], head: ResponseHead) -> None:
        """Send a 1xx response head; dropped once the connection is closed."""
        if not self.driver.closed:
            self.driver.adapter.send_informational(self.stream_id, head)
            self.driver.schedule_flush()

    async def send_data(self, data: bytes) -> None:
        """Send body bytes, waiting for capacity; raises ProxyError when the stream is gone."""
        view = memoryview(data)
        offset = 0
        while offset < len(data):
            capacity = await self.driver.wait_capacity(self)
            chunk = (
                data if offset == 0 and capacity >= len(data) else bytes(view[offset:][:capacity])
            )
            self.driver.adapter.send_data(self.stream_id, chunk)
            offset += len(chunk)
            self.bytes_sent += len(chunk)
            self.driver.schedule_flush()

    def send_trailers(self, trailers: Headers) -> None:
        """End the outgoing message with trailers."""
        self.check_open()
        self.local_ended = True
        self.driver.adapter.send_trailers(self.stream_id, trailers)
        self.driver.schedule_flush()

    def end(self) -> None:
        """End the outgoing message."""
        self.check_open()
        self.local_ended = True
        self.driver.adapter.end_stream(self.stream_id)
        self.driver.schedule_flush()

    def reset(self, code: ErrorCode = ErrorCode.CANCEL) -> None:
        """Abandon the stream in both directions."""
        if not self.driver.closed:
            self.driver.adapter.reset_stream(self.stream_id, code)
            self.driver.schedule_flush()
        self.fail(self.driver.peer_error(ErrorKind.INTERNAL, "stream reset locally"))

    def stop_receiving(self) -> None:
        """The response is complete but the request is not: ask the client to stop sending
        (RST_STREAM NO_ERROR on h2, STOP_SENDING on h3, closing on h1; RFC 9113 section 8.1).
        It goes a moment later: some clients drop a response whose reset arrives with it."""
        self.driver.loop.call_later(STOP_RECEIVING_DELAY, self._stop_receiving_now)

    def _stop_receiving_now(self) -> None:
        if not self.driver.closed and not self.body.ended:
            self.driver.adapter.reset_stream(self.stream_id, ErrorCode.NO_ERROR)
            self.driver.schedule_flush()

    def close(self) -> None:
        """Forget the stream; call once both directions are done or abandoned. Bytes still
        queued are credited back, so a shared connection's window does not shrink."""
        if self.body.buffered > 0:
            self.body.release(self.body.buffered)
        self.driver.streams.pop(self.stream_id, None)
        if self.driver.reading_paused:
            self.driver.reading_paused = False
            self.driver.set_reading(True)
        self.driver.stream_closed(self)

    def check_open(self) -> None:
        """Raise the stream's error, or a peer error when the connection is closed."""
        if self.error is not None:
            raise self.error
        if self.driver.closed:
            raise self.driver.peer_error(ErrorKind.UPSTREAM_RESET, "connection closed")


class ConnectionDriver(Generic[A_co]):
    """Shared event dispatch for a connection of either role over any transport.

    Subclasses provide ``flush`` (move queued bytes or datagrams to the transport) and
    ``close_transport``, and override ``on_request`` (server role). The type parameter is the
    adapter's contract (protocols.base): ``open_stream`` needs a client-role adapter.
    """

    # Stop reading the transport while a stream's body is over its high water (set by drivers
    # whose adapter has no flow control of its own; see ByteStreamAdapter).
    pause_on_buffer = False

    def __init__(
        self,
        adapter: A_co,
        *,
        peer_side: ErrorSource,
        write_timeout: float = 60.0,
        stream_buffer: int = DEFAULT_STREAM_BUFFER,
    ) -> None:
        self.adapter = adapter
        self.peer_side = peer_side
        self.write_timeout = write_timeout
        self.stream_buffer = stream_buffer
        self.loop = asyncio.get_running_loop()
        self.streams: dict[int, StreamIO[StreamSender]] = {}
        self.requests = 0
        self.closed = False
        self.going_away = False
        self.writable = True
        self.reading_paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_scheduled = False

    # -- subclass interface -------------------------------------------------------------------

    def flush(self) -> None:
        """Move what the adapter queued onto the transport."""
        raise NotImplementedError

    def close_transport(self) -> None:
        """Close the underlying transport (after queued bytes went out)."""
        raise NotImplementedError

    def set_reading(self, enabled: bool) -> None:
        """Pause or resume reading from the transport (byte streams without flow control)."""

    def on_request(self, stream: StreamIO[A_co], head: RequestHead, end_stream: bool) -> None:
        """Server role: a request arrived on a new stream."""

    def open_stream(
        self: ConnectionDriver[ClientAdapter], head: RequestHead, end_stream: bool
    ) -> StreamIO[ClientAdapter]:
        """Client role: send a request head; the stream carries its body and the response."""
        if self.closed:
            raise self.peer_error(ErrorKind.UPSTREAM_RESET, "connection closed")
        try:
            stream_id = self.adapter.send_request(head, end_stream)
        except LocalProtocolError as exc:
            message = f"cannot open a stream: {exc}"
            raise self.peer_error(ErrorKind.UPSTREAM_RESET, message) from None
        stream = StreamIO(self, stream_id)
        stream.local_ended = end_stream
        self.streams[stream_id] = stream
        self.requests += 1
        self.schedule_flush()
        return stream

    def stream_closed(self, stream: StreamIO[StreamSender]) -> None:
        """A stream was forgotten; subclasses may reuse or close the connection."""

    # -- shared machinery ---------------------------------------------------------------------

    def peer_error(self, kind: ErrorKind, message: str) -> ProxyError:
        """An error blamed on this connection's peer."""
        if self.peer_side is ErrorSource.DOWNSTREAM:
            return ProxyError.downstream(ErrorKind.DOWNSTREAM_GONE, message)
        if kind is ErrorKind.INTERNAL:
            kind = ErrorKind.UPSTREAM_RESET
        return ProxyError.upstream(kind, message)

    def schedule_flush(self) -> None:
        """Flush once at the end of this event-loop iteration, however many sends queued."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._run_flush)

    def _run_flush(self) -> None:
        self._flush_scheduled = False
        if not self.closed:
            self.flush()

    def credit(self, stream_id: int, amount: int) -> None:
        """Body bytes moved on: return flow-control credit and resume reading when drained."""
        if self.closed:
            return
        self.adapter.consumed(stream_id, amount)
        self.schedule_flush()
        if self.reading_paused:
            stream = self.streams.get(stream_id)
            if stream is None or stream.body.buffered <= stream.body.low_water:
                self.reading_paused = False
                self.set_reading(True)

    async def wait_capacity(self, stream: StreamIO[StreamSender]) -> int:
        """Wait until ``stream`` may send; returns how many bytes. Raises if it cannot."""
        deadline = self.loop.time() + self.write_timeout
        while True:
            stream.check_open()
            if stream.local_ended:
                raise self.peer_error(ErrorKind.INTERNAL, "stream already ended")
            if self.writable:
                capacity = self.adapter.send_capacity(stream.stream_id)
                if capacity > 0:
                    return capacity
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise self.peer_error(ErrorKind.WRITE_TIMEOUT, "peer stopped reading")
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def wake_writers(self) -> None:
        """Capacity may have grown: let every waiting sender re-check."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def connection_failed(self, message: str) -> None:
        """The transport is gone: fail every stream."""
        if self.closed:
            return
        self.closed = True
        error = self.peer_error(ErrorKind.UPSTREAM_RESET, message)
        for stream in list(self.streams.values()):
            stream.peer_failed(error)
        self.wake_writers()

    def handle_events(self, events: list[Event]) -> None:
        """Dispatch adapter events to their streams."""
        for event in events:
            self._dispatch(event)
        if events:
            self.schedule_flush()

    def _dispatch(self, event: Event) -> None:
        stream_id: int | None = getattr(event, "stream_id", None)
        stream = self.streams.get(stream_id) if stream_id is not None else None
        if isinstance(event, RequestHeaders):
            request = StreamIO(self, event.stream_id)
            self.streams[event.stream_id] = request
            if event.end_stream:
                request.body.feed_end()
            self.on_request(request, event.head, event.end_stream)
        elif isinstance(event, RequestData | ResponseData):
            if stream is None:
                self.adapter.consumed(event.stream_id, len(event.data))
                return
            stream.body.feed(event.data)
            if self.pause_on_buffer and stream.body.above_high_water and not self.reading_paused:
                self.reading_paused = True
                self.set_reading(False)
        elif isinstance(event, RequestTrailers | ResponseTrailers):
            if stream is not None:
                stream.body.feed_trailers(event.trailers)
        elif isinstance(event, RequestEnd | ResponseEnd):
            if stream is not None:
                stream.body.feed_end()
        elif isinstance(event, ResponseHeaders):
            if stream is not None and not stream.response.done():
                stream.response.set_result(event.head)
                if event.end_stream:
                    stream.body.feed_end()
        elif isinstance(event, InformationalResponse):
            if stream is not None and stream.informational is not None:
                stream.informational(event.head)
        elif isinstance(event, StreamReset):
            if stream is not None:
                error = self.peer_error(
                    ErrorKind.UPSTREAM_RESET, f"stream reset ({event.code.name})"
                )
                if event.code is ErrorCode.REFUSED_STREAM and error.source is ErrorSource.UPSTREAM:
                    error.retry = True  # the upstream did not process it: safe to send again
                stream.peer_failed(error)
        elif isinstance(event, ProtocolError):
            self._protocol_error(event, stream)
        elif isinstance(event, CapacityAvailable):
            self.wake_writers()
        elif isinstance(event, GoAway):
            self.going_away = True
        elif isinstance(event, ConnectionClosed):
            self.connection_failed(event.message)
            self.flush()
            self.close_transport()

    def on_protocol_error(self, event: ProtocolError) -> None:
        """The peer broke the protocol (the adapter already answered): subclasses log it."""

    def _protocol_error(self, event: ProtocolError, stream: StreamIO[StreamSender] | None) -> None:
        if self.closed:
            return
        self.on_protocol_error(event)
        kind = ErrorKind.UPSTREAM_PROTOCOL
        if self.peer_side is ErrorSource.DOWNSTREAM:
            kind = ErrorKind.DOWNSTREAM_PROTOCOL
        error = ProxyError(kind, self.peer_side, f"protocol error: {event.message}", retry=False)
        if event.stream_id is not None:
            if stream is not None:
                stream.peer_failed(error)
            return
        if event.stream_id is None:
            for open_stream in list(self.streams.values()):
                open_stream.peer_failed(error)
            self.closed = True
            self.wake_writers()
            self.flush()
            self.close_transport()


ServerStream = StreamIO[ServerAdapter]
"""A server-role stream: what a Session writes its response to."""

ClientStream = StreamIO[ClientAdapter]
"""A client-role stream: an upstream request and its response."""
