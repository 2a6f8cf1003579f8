"""TCP and TLS byte streams as callbacks, with read pause/resume and write-buffer backpressure."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol, cast

from protocols.limits import DEFAULT_STREAM_BUFFER

__all__ = ["ByteStream", "Receiver", "describe_os_error", "open_tcp", "start_tcp_server"]

WRITE_HIGH_WATER = DEFAULT_STREAM_BUFFER
WRITE_LOW_WATER = 64 * 1024


def describe_os_error(exc: OSError) -> str:
    """A short reason such as ``Connection refused`` (asyncio's own messages hide it)."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


class Receiver(Protocol):
    """What a byte stream reports to its owner."""

    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...


class ByteStream(asyncio.Protocol):
    """One TCP or TLS connection. ``receiver_factory`` is called once the connection is made."""

    def __init__(
        self,
        receiver_factory: Callable[[ByteStream], Receiver],
        addresses: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        self._factory = receiver_factory
        self._addresses = addresses  # peername/sockname a PROXY header gave, over the socket's
        self._receiver: Receiver | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._receiver = self._factory(self)

    def data_received(self, data: bytes) -> None:
        if self._receiver is not None:
            self._receiver.data_received(data)

    def eof_received(self) -> bool | None:
        if self._receiver is not None:
            self._receiver.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._receiver is not None:
            self._receiver.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._receiver is not None:
            self._receiver.pause_writing()

    def resume_writing(self) -> None:
        if self._receiver is not None:
            self._receiver.resume_writing()

    # -- owner API ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes; the transport's buffer limits raise pause_writing when it fills."""
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """Close after the queued bytes are written."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping queued bytes."""
        if self.transport is not None:
            self.transport.abort()

    def set_reading(self, enabled: bool) -> None:
        """Pause or resume reading from the socket."""
        if self.transport is None or self.transport.is_closing():
            return
        if enabled:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def extra(self, name: str) -> Any:
        """A transport fact (``peername``, ``sockname``, ``ssl_object``)."""
        if self._addresses is not None and name in self._addresses:
            return self._addresses[name]
        return None if self.transport is None else self.transport.get_extra_info(name)

    @property
    def receiver(self) -> Receiver | None:
        """What ``receiver_factory`` made for this connection (None before it is made)."""
        return self._receiver

    @property
    def alpn(self) -> str | None:
        """The negotiated ALPN protocol, if TLS."""
        ssl_object = self.extra("ssl_object")
        return None if ssl_object is None else ssl_object.selected_alpn_protocol()


async def start_tcp_server(
    host: str,
    port: int,
    receiver_factory: Callable[[ByteStream], Receiver],
    *,
    ssl_context: ssl.SSLContext | None,
    reuse_port: bool = False,
    backlog: int = 1024,
    tls_handshake_timeout: float = 10.0,
) -> asyncio.Server:
    """Listen on ``host:port``; each accepted connection gets its own receiver."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: ByteStream(receiver_factory),
        host,
        port,
        ssl=ssl_context,
        reuse_port=reuse_port or None,
        backlog=backlog,
        ssl_handshake_timeout=tls_handshake_timeout if ssl_context else None,
    )


async def open_tcp(
    host: str,
    port: int,
    receiver_factory: Callable[[ByteStream], Receiver],
    *,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    connect_timeout: float,
    tls_handshake_timeout: float = 10.0,
) -> ByteStream:
    """Connect within ``connect_timeout`` and handshake TLS within ``tls_handshake_timeout``;
    raises OSError, ssl.SSLError or TimeoutError."""
    loop = asyncio.get_running_loop()
    budget = connect_timeout + (tls_handshake_timeout if ssl_context else 0.0)
    async with asyncio.timeout(budget):
        _, stream = await loop.create_connection(
            lambda: ByteStream(receiver_factory),
            host,
            port,
            ssl=ssl_context,
            server_hostname=server_hostname if ssl_context else None,
            ssl_handshake_timeout=tls_handshake_timeout if ssl_context else None,
        )
    return stream
