"""What both HTTP/2 adapter roles share: bytes in and out, body sending, credit, closing.

Received body bytes are credited back to the peer only when the owner calls ``consumed``. h2's
errors become events (receiving) or are swallowed when the stream is gone (sending); misuse by
the owner raises ``LocalProtocolError``. A server-role connection also runs the flood budget
(``protocols.flood``) over every frame the peer sends. Both roles count each received body
against its content-length (``H2Stream.meter``; h2's own, connection-wide check is off:
``h2_compat``), so a mismatch is an error of that stream only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import h2.events as h2e
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error, NoSuchStreamError
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes

from . import _h2_convert as conv
from ._message_checks import BodyMeter
from .errors import ErrorCode, LocalProtocolError
from .events import (
    CapacityAvailable,
    ConnectionClosed,
    Event,
    GoAway,
    ProtocolError,
    StreamReset,
)
from .flood import FloodBudget
from .h2_compat import MeterlessH2Connection
from .limits import DEFAULT_STREAM_BUFFER
from .messages import Headers

__all__ = [
    "DEFAULT_INITIAL_WINDOW",
    "DEFAULT_MAX_HEADER_LIST_SIZE",
    "MAX_WINDOW",
    "H2Adapter",
    "H2Stream",
]

DEFAULT_INITIAL_WINDOW = DEFAULT_STREAM_BUFFER
DEFAULT_MAX_HEADER_LIST_SIZE = 64 * 1024
_SPEC_INITIAL_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1
_CONNECTION_WINDOW_STREAMS = 4  # default connection window: this many full stream windows
_BLOCK_FACTOR = 2  # a header block over this many times max_header_list_size: connection error


@dataclass(slots=True)
class H2Stream:
    """What the adapter tracks per live stream, beyond h2's own state."""

    unacked: int = 0  # body bytes handed to the owner and not yet credited back
    recv_done: bool = False  # the peer's side ended (END_STREAM), already reported
    send_done: bool = False  # our side ended
    head_sent: bool = False  # the final response head (server) / request head (client) went out
    meter: BodyMeter | None = None  # the received body counted against its content-length
    method: bytes = b""  # client role: the request's method (HEAD and CONNECT shape the body)


class H2Adapter:
    """What both roles share: bytes in and out, body sending, flow-control credit, closing."""

    pauses_reading_on_buffer = False  # flow control bounds what the peer may send

    # The role's body events: Request* (server) or Response* (client).
    _data_event: Callable[[int, bytes], Event]
    _trailers_event: Callable[[int, Headers], Event]
    _end_event: Callable[[int], Event]

    def __init__(
        self,
        *,
        client_side: bool,
        initial_window: int,
        max_header_list_size: int,
        connection_window: int | None,
        settings: dict[SettingCodes | int, int],
        budget: FloodBudget | None = None,
        decoder_cap: int | None = None,
        meter_bodies: bool = False,
    ) -> None:
        if not 0 <= initial_window <= MAX_WINDOW:
            raise ValueError(f"initial_window must be within 0..{MAX_WINDOW}")
        if max_header_list_size <= 0:
            raise ValueError("max_header_list_size must be positive")
        config = H2Configuration(
            client_side=client_side,
            header_encoding=None,
            validate_inbound_headers=False,  # checked per stream: conv.malformed
            normalize_inbound_headers=True,
        )
        # meter_bodies: the owner counts DATA against content-length (stream errors), not h2.
        self._conn = (MeterlessH2Connection if meter_bodies else H2Connection)(config=config)
        if decoder_cap is not None:  # decode beyond the advertised limit, up to this hard cap
            self._conn.decoder = conv.CappedDecoder(decoder_cap)
        self._conn.initiate_connection()
        # Sent as a second SETTINGS frame so that the windows change only when the peer
        # acknowledges them, as RFC 9113 section 6.9.2 requires for a smaller window.
        settings[SettingCodes.INITIAL_WINDOW_SIZE] = initial_window
        settings[SettingCodes.MAX_HEADER_LIST_SIZE] = max_header_list_size
        self._conn.update_settings(settings)
        if connection_window is None:
            connection_window = initial_window * _CONNECTION_WINDOW_STREAMS
        connection_window = min(connection_window, MAX_WINDOW)
        if connection_window > _SPEC_INITIAL_WINDOW:
            self._conn.increment_flow_control_window(connection_window - _SPEC_INITIAL_WINDOW)
        self._max_block = max_header_list_size * _BLOCK_FACTOR
        self._scanner = conv.FrameScanner(server=not client_side, max_block=self._max_block)
        self._budget = budget
        self._streams: dict[int, H2Stream] = {}
        self._out = bytearray()  # our own frames (graceful GOAWAY), ahead of h2's pending bytes
        self._dead = False  # h2 can neither send nor receive anything more
        self._closed_reported = False
        self._goaway_sent: int | None = None  # last stream id of our graceful GOAWAY
        self._goaway_received: int | None = None  # lowest last stream id the peer announced
        self._remote_settings_seen = False
        self._capacity_seen: set[int | None] = set()

    # -- ByteStreamAdapter ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the socket; ``b""`` means end of file."""
        if not data:
            return self._eof()
        events: list[Event] = []
        if self._dead:
            return events
        self._capacity_seen.clear()
        max_frame_size = self._conn.max_inbound_frame_size
        for part in self._scanner.split(data, max_frame_size):
            if isinstance(part, conv.FrameHead):
                breach = self._on_frame(part)
                if breach is not None:
                    events.append(self._fail(ErrorCode.ENHANCE_YOUR_CALM, breach))
                    return events
                continue
            if isinstance(part, int):
                self._on_goaway(part, None, events)
                continue
            try:
                h2_events = self._conn.receive_data(part)
            except H2ProtocolError as exc:
                events.append(self._fail(ErrorCode.from_h2(int(exc.error_code)), str(exc)))
                return events
            except Exception as exc:  # anything else h2 raised on the peer's bytes
                events.append(self._fail(ErrorCode.INTERNAL_ERROR, f"h2 failed: {exc!r}"))
                return events
            self._translate(h2_events, events)
            if self._budget is not None and self._budget.breach is not None:
                events.append(self._fail(ErrorCode.ENHANCE_YOUR_CALM, self._budget.breach))
            if self._dead:
                return events
        if self._scanner.oversized:
            message = f"frame over {max_frame_size} bytes"
            events.append(self._fail(ErrorCode.FRAME_SIZE_ERROR, message))
        elif self._scanner.block_overflow:
            message = f"header block over {self._max_block} bytes"
            events.append(self._fail(ErrorCode.ENHANCE_YOUR_CALM, message))
        return events

    def _on_frame(self, head: conv.FrameHead) -> str | None:
        """Run the flood budget over one received frame; the breach, if any."""
        budget = self._budget
        if budget is None:
            return None
        stream = self._streams.get(head.stream_id)
        reading = stream is not None and not stream.recv_done
        if conv.useful_frame(head, reading):
            budget.useful()
            return None
        name = conv.idle_frame(head, reading, exists=stream is not None)
        return None if name is None else budget.idle_frame(name)

    def data_to_send(self) -> bytes:
        """Take the bytes queued for the socket."""
        data = self._conn.data_to_send()
        if self._out:
            data = bytes(self._out) + data
            self._out.clear()
        return data

    def next_events(self) -> list[Event]:
        """Always empty for HTTP/2: sending never makes a received event visible."""
        return []

    # -- StreamSender -----------------------------------------------------------------------

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue body bytes, split into frames; never more than ``send_capacity`` allows."""
        stream = self._sendable(stream_id)
        if stream is None:
            return
        if not data:
            if end_stream:
                self.end_stream(stream_id)
            return
        capacity = self.send_capacity(stream_id)
        if len(data) > capacity:
            raise LocalProtocolError(
                f"{len(data)} bytes exceed the send capacity {capacity} of stream {stream_id}",
                ErrorCode.FLOW_CONTROL_ERROR,
            )
        if self._budget is not None:
            self._budget.useful()
        frame_size = self._conn.max_outbound_frame_size
        view = memoryview(data)
        total = len(data)
        with self._guard(stream_id):
            for offset in range(0, total, frame_size):
                last = offset + frame_size >= total
                self._conn.send_data(
                    stream_id, view[offset : offset + frame_size], end_stream=end_stream and last
                )
            if end_stream:
                self._sent_end(stream_id, stream)

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        """Queue trailers and end the stream (an empty trailer list just ends it)."""
        stream = self._sendable(stream_id)
        if stream is None:
            return
        fields = conv.trailer_fields(trailers)
        if not fields:
            self.end_stream(stream_id)
            return
        self._check_fields(fields)
        with self._guard(stream_id):
            self._conn.send_headers(stream_id, fields, end_stream=True)
            self._sent_end(stream_id, stream)

    def end_stream(self, stream_id: int) -> None:
        """End the stream's body with an empty DATA frame carrying END_STREAM."""
        stream = self._sendable(stream_id)
        if stream is None:
            return
        with self._guard(stream_id):
            self._conn.end_stream(stream_id)
            self._sent_end(stream_id, stream)

    def _on_trailers(
        self, stream_id: int, raw: list[tuple[bytes, bytes]], out: list[Event]
    ) -> None:
        problem = conv.malformed(raw, client=self._conn.config.client_side, trailer=True)
        if problem is not None:  # a stream error (RFC 9113 section 8.1.1)
            self.reset_stream(stream_id, ErrorCode.PROTOCOL_ERROR)
            out.append(ProtocolError(stream_id, ErrorCode.MESSAGE_ERROR, problem))
            return
        out.append(self._trailers_event(stream_id, raw))

    def reset_stream(self, stream_id: int, code: ErrorCode) -> None:
        """Abandon the stream with RST_STREAM; credit held for its unconsumed bytes goes back."""
        stream = self._streams.pop(stream_id, None)
        if stream is None or self._dead:
            return
        self._release(stream_id, stream)
        with self._guard(stream_id):
            self._conn.reset_stream(stream_id, code.h2_code)

    def send_capacity(self, stream_id: int) -> int:
        """Bytes ``send_data`` accepts now: the stream and connection flow-control windows."""
        if self._sendable(stream_id, need_head=False) is None:
            return 0
        try:
            return max(0, self._conn.local_flow_control_window(stream_id))
        except H2Error:
            return 0

    def consumed(self, stream_id: int, amount: int) -> None:
        """Credit back ``amount`` received body bytes of ``stream_id``.

        Credit is capped at what the stream delivered; a stream already reset was credited at
        the reset, so later calls for it are ignored.
        """
        stream = self._streams.get(stream_id)
        if stream is None or amount <= 0:
            return
        amount = min(amount, stream.unacked)
        if amount:
            stream.unacked -= amount
            self._ack(stream_id, amount)
        self._forget_if_done(stream_id, stream)

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """Send GOAWAY. NO_ERROR is graceful: no new streams, but the open ones may finish;
        any other code ends the connection at once."""
        if self._dead:
            return
        if code is not ErrorCode.NO_ERROR:
            self._quietly_close(code)
            self._dead = True
            return
        self._graceful_goaway(self._conn.highest_inbound_stream_id)

    def _graceful_goaway(self, last_stream_id: int) -> None:
        """Queue a NO_ERROR GOAWAY: streams above ``last_stream_id`` will be refused."""
        if self._goaway_sent is None and not self._dead:
            self._goaway_sent = last_stream_id
            self._out += self._conn.data_to_send()
            self._out += conv.goaway_frame(last_stream_id, 0)

    # -- receiving ---------------------------------------------------------------------------

    def _translate(self, h2_events: list[h2e.Event], out: list[Event]) -> None:
        for ev in h2_events:
            if isinstance(ev, h2e.DataReceived):
                self._on_data(ev, out)
            elif isinstance(ev, h2e.StreamEnded):
                self._on_stream_ended(ev, out)
            elif isinstance(ev, h2e.TrailersReceived):
                stream = self._streams.get(ev.stream_id)
                if stream is not None and not stream.recv_done and self._body_ends(ev, out):
                    self._on_trailers(ev.stream_id, ev.headers, out)
            elif isinstance(ev, h2e.WindowUpdated):
                if ev.stream_id == 0:
                    self._capacity(None, out)
                elif self._sendable(ev.stream_id, need_head=False) is not None:
                    self._capacity(ev.stream_id, out)
            elif isinstance(ev, h2e.StreamReset):
                stream = self._streams.pop(ev.stream_id, None)
                if stream is not None:
                    if self._budget is not None and not stream.send_done:
                        self._budget.premature_reset()
                    self._release(ev.stream_id, stream)
                    out.append(StreamReset(ev.stream_id, ErrorCode.from_h2(int(ev.error_code))))
            elif isinstance(ev, h2e.RemoteSettingsChanged):
                first, self._remote_settings_seen = not self._remote_settings_seen, True
                changed = ev.changed_settings
                if (
                    first
                    or SettingCodes.INITIAL_WINDOW_SIZE in changed
                    or SettingCodes.MAX_CONCURRENT_STREAMS in changed
                ):
                    self._capacity(None, out)
            elif isinstance(ev, h2e.ConnectionTerminated):
                self._on_goaway(ev.last_stream_id or 0, int(ev.error_code or 0), out)
            else:
                self._on_role_event(ev, out)

    def _on_role_event(self, ev: h2e.Event, out: list[Event]) -> None:
        """Head events: RequestReceived (server) or (Informational)ResponseReceived (client)."""

    def _on_data(self, ev: h2e.DataReceived, out: list[Event]) -> None:
        data = ev.data or b""
        flow = ev.flow_controlled_length or 0
        stream = self._streams.get(ev.stream_id)
        if stream is None or stream.recv_done:
            # A stream we refused, rejected or reset: its bytes are nobody's to credit.
            if flow:
                self._ack(ev.stream_id, flow)
            return
        if flow > len(data):  # padding is flow-controlled but never reaches the owner
            self._ack(ev.stream_id, flow - len(data))
        stream.unacked += len(data)  # held-back bytes too: credited once the owner has them
        if stream.meter is not None:
            passed = stream.meter.take(data)
            if passed is None:  # longer than declared: none of these bytes is handed on
                self._body_error(ev.stream_id, stream, ev.stream_ended is not None, out)
                return
            data = passed
            if ev.stream_ended is not None:  # the end comes with it: nothing is held back
                tail = stream.meter.finish()
                if tail is None:
                    self._body_error(ev.stream_id, stream, True, out)
                    return
                data += tail
        if data:
            out.append(self._data_event(ev.stream_id, data))

    def _body_ends(self, ev: h2e.StreamEnded | h2e.TrailersReceived, out: list[Event]) -> bool:
        """The peer's body ended: release what the meter held back, or report the stream's
        error instead (False) when the body is shorter than its content-length."""
        stream = self._streams.get(ev.stream_id)
        if stream is None or stream.meter is None:
            return True
        tail = stream.meter.finish()
        if tail is None:
            self._body_error(ev.stream_id, stream, True, out)
            return False
        if tail:
            out.append(self._data_event(ev.stream_id, tail))
        return True

    def _body_error(self, stream_id: int, stream: H2Stream, ended: bool, out: list[Event]) -> None:
        """The body disagrees with its content-length: a stream error, instead of the bytes
        or the end that would have let the owner complete the message (RFC 9113 8.1.1).
        ``ended``: the peer's side of the stream is closed."""
        assert stream.meter is not None
        reason = stream.meter.problem()
        if stream.head_sent:
            self.reset_stream(stream_id, ErrorCode.PROTOCOL_ERROR)
        else:
            self._streams.pop(stream_id, None)
            self._release(stream_id, stream)  # before the answer closes h2's stream
            self._answer_malformed(stream_id, reason, ended)
        out.append(ProtocolError(stream_id, ErrorCode.MESSAGE_ERROR, reason))

    def _answer_malformed(self, stream_id: int, reason: str, request_ended: bool) -> None:
        """Answer a malformed message the peer sent, on its stream: the server role sends a
        400, the client role resets the stream."""
        with self._guard(stream_id):
            self._conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)

    def _on_stream_ended(self, ev: h2e.StreamEnded, out: list[Event]) -> None:
        stream_id = ev.stream_id
        stream = self._streams.get(stream_id)
        if stream is None or stream.recv_done:  # e.g. already reported as end_stream=True
            return
        if not self._body_ends(ev, out):
            return
        stream.recv_done = True
        out.append(self._end_event(stream_id))
        self._forget_if_done(stream_id, stream)

    def _on_goaway(self, last_stream_id: int, error_code: int | None, out: list[Event]) -> None:
        """A GOAWAY from the peer. ``error_code`` None: a graceful one h2 never saw."""
        if self._goaway_received is None or last_stream_id < self._goaway_received:
            self._goaway_received = last_stream_id
        out.append(GoAway(last_stream_id))
        # Streams we opened above last_stream_id were never processed: safe to retry elsewhere.
        outbound = 1 if self._conn.config.client_side else 0
        for stream_id in sorted(self._streams):
            if stream_id > last_stream_id and stream_id % 2 == outbound:
                self._release(stream_id, self._streams.pop(stream_id))
                out.append(StreamReset(stream_id, ErrorCode.REFUSED_STREAM))
        if error_code is not None:  # h2 saw it and has closed the connection
            self._dead = True
            if not self._closed_reported:
                self._closed_reported = True
                code = ErrorCode.from_h2(int(error_code))
                out.append(ConnectionClosed(code, f"peer sent GOAWAY ({code.name})"))

    def _eof(self) -> list[Event]:
        self._dead = True
        self._streams.clear()
        if self._closed_reported:
            return []
        self._closed_reported = True
        return [ConnectionClosed(ErrorCode.NO_ERROR, "peer closed the connection")]

    def _fail(self, code: ErrorCode, message: str) -> ProtocolError:
        """A connection error: make sure a GOAWAY is queued (h2 queues its own for most)."""
        if self._conn.state_machine.state is not ConnectionState.CLOSED:
            self._quietly_close(code)
        self._dead = True
        return ProtocolError(None, code, message or "HTTP/2 protocol error")

    def _capacity(self, stream_id: int | None, out: list[Event]) -> None:
        if stream_id not in self._capacity_seen:
            self._capacity_seen.add(stream_id)
            out.append(CapacityAvailable(stream_id))

    # -- stream bookkeeping ------------------------------------------------------------------

    def _sendable(self, stream_id: int, *, need_head: bool = True) -> H2Stream | None:
        """The stream if we may still send on it. ``need_head``: raise if the owner has not
        sent the head yet (a body before it would be malformed)."""
        if self._dead:
            return None
        stream = self._streams.get(stream_id)
        if stream is None or stream.send_done:
            return None
        if need_head and not stream.head_sent:
            raise LocalProtocolError(f"stream {stream_id}: body or end before the head")
        return stream

    def _sent_end(self, stream_id: int, stream: H2Stream) -> None:
        stream.send_done = True
        self._forget_if_done(stream_id, stream)

    def _forget_if_done(self, stream_id: int, stream: H2Stream) -> None:
        if stream.recv_done and stream.send_done and not stream.unacked:
            self._streams.pop(stream_id, None)

    def _release(self, stream_id: int, stream: H2Stream) -> None:
        """Return the connection credit of bytes the owner will never consume now."""
        if stream.unacked:
            self._ack(stream_id, stream.unacked)
            stream.unacked = 0

    def _ack(self, stream_id: int, amount: int) -> None:
        if self._dead:
            return
        with suppress(H2Error, ValueError):  # the connection is closing: credit no longer matters
            self._conn.acknowledge_received_data(amount, stream_id)

    @contextmanager
    def _guard(self, stream_id: int) -> Iterator[None]:
        """Swallow h2 errors about streams that are gone; owner mistakes become ours."""
        try:
            yield
        except NoSuchStreamError:  # includes StreamClosedError: the peer reset it
            stream = self._streams.pop(stream_id, None)
            if stream is not None:
                self._release(stream_id, stream)
        except H2Error as exc:
            if self._dead:
                return
            raise LocalProtocolError(f"stream {stream_id}: {exc}") from exc

    def _check_fields(self, fields: conv.Fields) -> None:
        problem = conv.bad_fields(fields)
        if problem is not None:
            raise LocalProtocolError(problem)

    def _quietly_close(self, code: ErrorCode) -> None:
        with suppress(H2Error):  # already closed
            self._conn.close_connection(error_code=code.h2_code)
