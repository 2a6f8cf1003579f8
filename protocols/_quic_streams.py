"""Per-stream state, receive credit, send capacity and resets shared by the h3 and hq adapters.

Receive credit: every request stream is gated (the engine's ``GatedQuicConnection``) to
``stream_buffer`` bytes beyond what the owner has ``consumed``; framing bytes and header blocks
are credited by the adapter itself, body bytes only when the owner says so. Send capacity is
``stream_buffer`` minus the bytes aioquic still holds unacknowledged for the stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from aioquic.h3 import connection as h3c
from aioquic.h3.events import H3Event
from aioquic.quic import events as qe
from aioquic.quic.connection import QuicConnection

from . import events as ev
from ._message_checks import BodyMeter
from .engines.aioquic import GatedQuicConnection, stream_send_buffered, unacknowledged_data
from .errors import ErrorCode, LocalProtocolError

__all__ = ["SEND_ERRORS", "QuicStreamAdapter", "StreamState", "connection_closed"]

SEND_ERRORS = (h3c.ProtocolError, ValueError, RuntimeError)


def connection_closed(event: qe.ConnectionTerminated) -> ev.ConnectionClosed:
    """Map aioquic's ConnectionTerminated (application or transport close, idle timeout)."""
    if event.frame_type is None:  # CONNECTION_CLOSE of the application (HTTP/3 code)
        code = ErrorCode.from_h3(event.error_code)
    elif event.error_code == 0 or event.reason_phrase == "Idle timeout":
        code = ErrorCode.NO_ERROR
    else:
        code = ErrorCode.PROTOCOL_ERROR
    return ev.ConnectionClosed(code, event.reason_phrase)


def _peer_error(code: int) -> ErrorCode:
    mapped = ErrorCode.from_h3(code)
    if mapped is ErrorCode.INTERNAL_ERROR and code != ErrorCode.INTERNAL_ERROR.h3_code:
        return ErrorCode.PROTOCOL_ERROR
    return mapped


@dataclass(slots=True)
class StreamState:
    """Per request-stream bookkeeping shared by all roles."""

    visible: bool  # the owner knows the stream (saw its head, or sent it)
    received: int = 0  # QUIC stream bytes handed to the framing layer
    delivered: int = 0  # body bytes handed to the owner
    body_consumed: int = 0  # body bytes the owner credited back
    credited: int = 0  # stream bytes credited to the GatedQuicConnection
    headers: bool = False  # the peer's head arrived
    ignored: bool = False  # refused or abandoned: further frames are dropped
    msg_done: bool = False  # the peer's message ended (End event emitted)
    recv_done: bool = False  # QUIC receive side finished (FIN or RESET_STREAM)
    send_done: bool = False  # our side ended or was reset, or the peer sent STOP_SENDING
    reported: bool = False  # a ev.StreamReset was emitted
    peer_reset: bool = False  # the peer sent RESET_STREAM or STOP_SENDING
    stop_deferred: bool = False  # client role: STOP_SENDING(H3_NO_ERROR), reported at the end
    meter: BodyMeter | None = None  # h3 server: the request body against its content-length


class QuicStreamAdapter:
    """Stream state, credit, capacity and reset handling common to the h3 and hq adapters."""

    _server = True

    def __init__(self, quic: QuicConnection, stream_buffer: int) -> None:
        self.quic = quic
        self._stream_buffer = stream_buffer
        self._streams: dict[int, StreamState] = {}
        self._closing = False
        self.drained = False  # after a graceful close: every answer sent and acknowledged
        self._failed = False
        self._terminated = False

    def _framing_events(self, event: qe.QuicEvent) -> list[H3Event]:
        raise NotImplementedError

    def _on_framing_event(self, event: H3Event, out: list[ev.Event]) -> None:
        raise NotImplementedError

    def _held(self, stream_id: int) -> int:
        """Bytes of the stream the framing layer buffers (not yet credited)."""
        raise NotImplementedError

    def _release(self, stream_id: int) -> None:
        """Drop the framing layer's state for a finished stream."""

    def _blocked(self, stream_id: int) -> bool:
        """The framing layer still holds a message part it cannot decode yet (QPACK)."""
        return False

    def _failure(self) -> tuple[int, str] | None:
        return None

    def _check_pending(self, stream_id: int, st: StreamState, out: list[ev.Event]) -> None:
        """Refuse a head that is growing beyond its limit."""

    def handle_event(self, event: qe.QuicEvent) -> list[ev.Event]:
        """Feed one aioquic event; return the normalized events it produced."""
        if isinstance(event, qe.ConnectionTerminated):
            if self._terminated:
                return []
            self._terminated = True
            return [connection_closed(event)]
        out: list[ev.Event] = []
        touched: set[int] = set()
        if isinstance(event, qe.StreamDataReceived) and event.stream_id % 4 == 0:
            st = self._streams.get(event.stream_id)
            if st is None and self._server:
                st = self._open(event.stream_id, visible=False)
            if st is not None:
                st.received += len(event.data)
                touched.add(event.stream_id)
        for h3_event in self._framing_events(event):
            stream_id = getattr(h3_event, "stream_id", None)
            if isinstance(stream_id, int):
                touched.add(stream_id)
            self._on_framing_event(h3_event, out)
        failure = self._failure()
        if failure is not None and not self._failed:
            self._failed = True
            out.append(ev.ProtocolError(None, _peer_error(failure[0]), failure[1]))
        if isinstance(event, qe.StreamDataReceived) and event.end_stream:
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.recv_done = True
        elif (
            isinstance(event, qe.StreamReset | qe.StopSendingReceived) and event.stream_id % 4 == 0
        ):
            self._on_peer_reset(event, out)
            touched.add(event.stream_id)
        for stream_id in touched:
            st = self._streams.get(stream_id)
            if st is not None:
                if not self._failed:  # after a connection error, no stream error follows
                    self._check_pending(stream_id, st, out)
                self._credit(stream_id, st)
                self._finish_check(stream_id, st)
        return out

    def _open(self, stream_id: int, *, visible: bool) -> StreamState:
        st = self._streams[stream_id] = StreamState(visible)
        if isinstance(self.quic, GatedQuicConnection):
            self.quic.set_receive_window(stream_id, self._stream_buffer)
        return st

    def _on_peer_reset(
        self, event: qe.StreamReset | qe.StopSendingReceived, out: list[ev.Event]
    ) -> None:
        st = self._streams.get(event.stream_id)
        if st is None:
            return
        was_done = st.send_done and st.msg_done
        if isinstance(event, qe.StreamReset):
            st.recv_done = True
            st.body_consumed = st.delivered  # whatever the owner still holds is moot now
        else:
            st.send_done = True
            if not self._server and event.error_code == ErrorCode.NO_ERROR.h3_code:
                # The server answers without the rest of our body (RFC 9114 4.1): its response
                # is coming, so the stop is reported once the response has ended.
                st.stop_deferred = not st.msg_done
                if st.stop_deferred:
                    return
        if st.visible and not st.ignored and not st.reported and not was_done:
            st.reported = True
            out.append(ev.StreamReset(event.stream_id, ErrorCode.from_h3(event.error_code)))

    def _credit(self, stream_id: int, st: StreamState) -> None:
        target = st.received - self._held(stream_id) - (st.delivered - st.body_consumed)
        if target > st.credited:
            if isinstance(self.quic, GatedQuicConnection):
                self.quic.consumed(stream_id, target - st.credited)
            st.credited = target

    def _abandon(self, stream_id: int, st: StreamState) -> None:
        st.ignored = True
        st.body_consumed = st.delivered
        self._credit(stream_id, st)

    def _finish_check(self, stream_id: int, st: StreamState) -> None:
        finished = st.send_done and st.recv_done and not self._blocked(stream_id)
        if finished and self._streams.get(stream_id) is st:
            del self._streams[stream_id]
            self._release(stream_id)
        self._maybe_close()

    def _in_flight(self, st: StreamState) -> bool:
        """The owner still owes this stream an answer (graceful close waits for it)."""
        return st.visible and not st.send_done

    def _maybe_close(self) -> None:
        if not self._closing or self._terminated:
            return
        busy = any(self._in_flight(st) for st in self._streams.values())
        self.drained = not busy and not unacknowledged_data(self.quic)

    def poll(self) -> None:
        """Call after each received datagram: a graceful close waits for the last ACKs."""
        self._maybe_close()

    def _send(self, stream_id: int, action: Callable[[], None], ends: bool) -> None:
        st = self._streams.get(stream_id)
        if st is None or st.send_done:
            return  # finished, reset by either side, or unknown: nothing to send any more
        try:
            action()
        except SEND_ERRORS as exc:
            raise LocalProtocolError(f"cannot send on stream {stream_id}: {exc}") from exc
        if ends:
            st.send_done = True
            self._finish_check(stream_id, st)

    def send_capacity(self, stream_id: int) -> int:
        """Bytes ``send_data`` accepts now: the buffer budget minus unacknowledged bytes."""
        st = self._streams.get(stream_id)
        if st is None or st.send_done:
            return 0
        return max(0, self._stream_buffer - stream_send_buffered(self.quic, stream_id))

    def consumed(self, stream_id: int, amount: int) -> None:
        """Credit back body bytes the next hop accepted (MAX_STREAM_DATA goes out on flush)."""
        st = self._streams.get(stream_id)
        if st is not None and amount > 0:
            st.body_consumed = min(st.delivered, st.body_consumed + amount)
            self._credit(stream_id, st)

    def reset_stream(self, stream_id: int, code: ErrorCode) -> None:
        """RESET_STREAM our side and STOP_SENDING theirs if it is still open."""
        st = self._streams.get(stream_id)
        if st is None:
            return
        if not st.send_done:
            with contextlib.suppress(*SEND_ERRORS):
                self.quic.reset_stream(stream_id, code.h3_code)
            st.send_done = True
        if not st.recv_done:
            with contextlib.suppress(ValueError):
                self.quic.stop_stream(stream_id, code.h3_code)
        self._abandon(stream_id, st)
        self._finish_check(stream_id, st)

    def _goaway(self) -> None:
        """Tell the peer no new streams will be processed (HTTP/3 server only)."""

    def _refuse(
        self, stream_id: int, st: StreamState, code: ErrorCode, reason: str, out: list[ev.Event]
    ) -> None:
        """Give up on a stream whose message is malformed."""
        self.reset_stream(stream_id, code)
        out.append(ev.ProtocolError(stream_id, code, reason))

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """NO_ERROR: GOAWAY; ``drained`` turns True once every seen request is answered and
        acknowledged, and the owner closes the connection after a short linger (closing at once
        makes some clients report an error for a response they fully received). Else close now."""
        if self._terminated:
            return
        self._goaway()
        self._closing = True
        if code is ErrorCode.NO_ERROR:
            self._maybe_close()
        else:
            self.quic.close(error_code=code.h3_code, reason_phrase=code.name.lower())
