"""The admin listener's socket and HTTP/1.1 handling (h11; one request per connection)."""

from __future__ import annotations

import asyncio
import contextlib
import http
import ipaddress
import logging
import socket

import h11

from .app import AdminApp, Reply

__all__ = ["AdminListener", "bind_admin", "is_loopback"]

log = logging.getLogger("quicproxy.admin")

READ_TIMEOUT = 10.0  # the whole request
MAX_REQUEST = 16 * 1024  # head and body bytes
MAX_CLIENTS = 64  # connections at once; beyond, new ones are closed at once
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_admin(host: str, port: int) -> socket.socket:
    """The listening socket (bound before forking, so a taken port fails the start)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=64)
    sock.setblocking(False)
    return sock


class AdminListener:
    """Serves ``app`` on ``sock`` until ``close``."""

    def __init__(self, app: AdminApp, sock: socket.socket) -> None:
        self.app = app
        self.sock = sock
        self.server: asyncio.Server | None = None
        self.clients = 0

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port."""
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        """Accept connections."""
        self.server = await asyncio.start_server(self._client, sock=self.sock)

    async def close(self) -> None:
        """Stop accepting and close the socket."""
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.clients >= MAX_CLIENTS:
            writer.close()
            return
        self.clients += 1
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self.clients -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                request = await _read_request(conn, reader)
        except h11.RemoteProtocolError:
            writer.write(_BAD_REQUEST)
            await writer.drain()
            return
        if request is None:
            return
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        reply = await self.app.handle(method, target)
        writer.write(_encode(conn, reply, head_only=method == "HEAD"))
        await writer.drain()


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    """The request, once its body (ignored, bounded) has ended; None if the client left."""
    request: h11.Request | None = None
    received = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(4096)
            received += len(data)
            if received > MAX_REQUEST:
                raise h11.RemoteProtocolError("request too large")
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None


def _encode(conn: h11.Connection, reply: Reply, head_only: bool) -> bytes:
    headers = [
        ("content-type", reply.content_type),
        ("content-length", str(len(reply.body))),
        ("cache-control", "no-store"),
        ("connection", "close"),
    ]
    if reply.allow:
        headers.append(("allow", reply.allow))
    reason = http.HTTPStatus(reply.status).phrase
    response = h11.Response(status_code=reply.status, headers=headers, reason=reason)
    out = conn.send(response) or b""
    if not head_only:
        out += conn.send(h11.Data(data=reply.body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    return out
