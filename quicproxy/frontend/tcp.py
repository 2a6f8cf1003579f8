"""TCP frontend: ALPN picks the h1 or h2 adapter; each request becomes a session and a task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from protocols.base import ServerTcpAdapter, StreamSender
from protocols.events import ProtocolError
from protocols.h1 import H1ServerAdapter
from protocols.h2 import H2ServerAdapter
from protocols.messages import RequestHead

from ..config import LimitsConfig
from ..errors import ErrorSource
from ..net.tcp import ByteStream
from ..net.tls import server_name
from ..session import DownstreamInfo
from ..streamio import ServerStream, StreamIO
from ..tcpdriver import TcpDriver
from .base import RequestStarter, log_refusal

__all__ = ["DownstreamTcp", "tcp_connection_factory"]

log = logging.getLogger("quicproxy.frontend")


def _address(value: Any) -> tuple[str, int]:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return ("unknown", 0)


class DownstreamTcp(TcpDriver[ServerTcpAdapter]):
    """One client connection over TCP (TLS or cleartext)."""

    def __init__(
        self,
        stream: ByteStream,
        starter: RequestStarter,
        limits: LimitsConfig,
        tls: bool,
        connections: set[DownstreamTcp],
        *,
        prior_knowledge: bool = False,
    ) -> None:
        alpn = stream.alpn if tls else None
        h2 = alpn == "h2" or prior_knowledge
        adapter: H1ServerAdapter | H2ServerAdapter
        if h2:
            adapter = H2ServerAdapter.from_limits(limits)
        else:
            adapter = H1ServerAdapter.from_limits(limits, scheme=b"https" if tls else b"http")
        super().__init__(
            stream,
            adapter,
            peer_side=ErrorSource.DOWNSTREAM,
            write_timeout=limits.write_timeout,
            idle_timeout=limits.idle_timeout,
            stream_buffer=limits.stream_buffer,
        )
        ssl_object = stream.extra("ssl_object")
        self.info = DownstreamInfo(
            protocol="h2" if h2 else "http/1.1",
            client_address=_address(stream.extra("peername")),
            server_address=_address(stream.extra("sockname")),
            tls=tls,
            sni=server_name(ssl_object),
            alpn=alpn,
        )
        self.starter = starter
        self.connections = connections
        connections.add(self)
        self.flush()  # the h2 server preface
        self.header_timeout = limits.header_timeout
        self._h1 = adapter if isinstance(adapter, H1ServerAdapter) else None
        self._head_timer: asyncio.TimerHandle | None = None
        if self._h1 is not None:
            self._arm_head_timer()  # the first request head is due within header_timeout

    def data_received(self, data: bytes) -> None:
        pipelined = self._h1 is not None and self._request_received()
        super().data_received(data)
        if pipelined and self.streams and not self.reading_paused:
            # Requests pipelined behind one being answered wait in the kernel, not in memory.
            self.reading_paused = True
            self.set_reading(False)
        self._watch_head()

    def _request_received(self) -> bool:
        """A request is in flight and its body has fully arrived."""
        return bool(self.streams) and all(s.body.ended for s in self.streams.values())

    def on_request(self, stream: ServerStream, head: RequestHead, end_stream: bool) -> None:
        self._cancel_head_timer()
        self.starter.start(stream, head, end_stream, self.info)

    def stream_closed(self, stream: StreamIO[StreamSender]) -> None:
        super().stream_closed(stream)
        if self.going_away and not self.streams:
            self.close()
        self._watch_head()

    def on_protocol_error(self, event: ProtocolError) -> None:
        log_refusal(self.info.client_address, self.info.protocol, event)

    def on_lost(self) -> None:
        self._cancel_head_timer()
        self.connections.discard(self)

    # -- HTTP/1.1 header timeout: the whole head within header_timeout, however it trickles ----

    def _watch_head(self) -> None:
        if self._h1 is None or self.closed:
            return
        if self.streams:
            self._cancel_head_timer()  # a request is being served: the next head waits for it
        elif self._h1.reading_head and self._head_timer is None:
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._h1 is None or self.closed or self.streams:
            return
        if self._h1.reading_head:
            log.info(
                "%s:%d: request head not complete within %gs: 408",
                *self.info.client_address,
                self.header_timeout,
            )
            self._h1.send_error(408, "request header timeout")
        self.flush()
        self.close_transport()


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class PrefaceSniffer:
    """A cleartext connection's first bytes decide: the HTTP/2 preface means h2 with prior
    knowledge (h2c), anything else HTTP/1.1. Decided at the first byte that differs from the
    preface (at once for every HTTP/1.1 method); a client that sends too little for
    ``header_timeout`` is closed."""

    def __init__(self, stream: ByteStream, make: Callable[[bool], DownstreamTcp], wait: float):
        self.stream = stream
        self.make = make
        self.buffer = b""
        self.connection: DownstreamTcp | None = None
        loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_later(wait, self._too_slow)

    def _too_slow(self) -> None:
        self._timer = None
        if self.connection is None:
            self.stream.close()

    def _decide(self, h2: bool) -> DownstreamTcp:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.connection = self.make(h2)
        return self.connection

    def data_received(self, data: bytes) -> None:
        if self.connection is not None:
            self.connection.data_received(data)
            return
        self.buffer += data
        seen = self.buffer[: len(H2_PREFACE)]
        if not H2_PREFACE.startswith(seen):
            self._decide(False).data_received(self.buffer)
        elif len(seen) == len(H2_PREFACE):
            self._decide(True).data_received(self.buffer)

    def eof_received(self) -> None:
        if self.connection is not None:
            self.connection.eof_received()
        else:
            self.stream.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.connection is not None:
            self.connection.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.connection is not None:
            self.connection.pause_writing()

    def resume_writing(self) -> None:
        if self.connection is not None:
            self.connection.resume_writing()


def tcp_connection_factory(
    starter: RequestStarter,
    limits: LimitsConfig,
    tls: bool,
    connections: set[DownstreamTcp],
    *,
    h2c: bool = False,
) -> Callable[[ByteStream], DownstreamTcp | PrefaceSniffer]:
    """The receiver factory a TCP listener calls for each accepted connection; with ``h2c``
    (cleartext listeners), HTTP/2 prior knowledge is recognised by its preface."""
    if h2c and not tls:

        def sniffing(stream: ByteStream) -> PrefaceSniffer:
            def make(h2: bool) -> DownstreamTcp:
                return DownstreamTcp(stream, starter, limits, tls, connections, prior_knowledge=h2)

            return PrefaceSniffer(stream, make, limits.header_timeout)

        return sniffing
    return lambda stream: DownstreamTcp(stream, starter, limits, tls, connections)
