"""A TCP listener behind a load balancer that sends the PROXY protocol header.

Each accepted connection must come from a trusted source (``trusted``, the balancers'
networks) and start with a PROXY header (v1 or v2, see ``proxy_header``); anything else is
closed at once and logged, so that nobody else can claim a client address. The header's
addresses then stand in for the socket's (``peername``/``sockname``), and TLS (if any) and
HTTP start on the same socket through ``loop.connect_accepted_socket``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Sequence

from ..config_reader import IPNetwork
from .proxy_header import HeaderError, read_header
from .tcp import ByteStream, Receiver

__all__ = ["ProxiedServer", "start_proxied_server"]

log = logging.getLogger("quicproxy.net.proxied")


def trusted_source(host: str, trusted: Sequence[IPNetwork]) -> bool:
    """Whether ``host`` (an IP, maybe IPv4-mapped IPv6) is in one of ``trusted``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


class ProxiedServer:
    """The accept loop of one listening socket (``close`` as asyncio.Server's)."""

    def __init__(
        self,
        sock: socket.socket,
        receiver_factory: Callable[[ByteStream], Receiver],
        *,
        ssl_context: ssl.SSLContext | None,
        trusted: Sequence[IPNetwork],
        header_timeout: float,
        tls_handshake_timeout: float,
    ) -> None:
        self.sockets = [sock]
        self._factory = receiver_factory
        self._ssl = ssl_context
        self._trusted = tuple(trusted)
        self._header_timeout = header_timeout
        self._tls_timeout = tls_handshake_timeout
        self._pending: set[asyncio.Task[None]] = set()
        self.refused = 0  # connections closed: untrusted source or no valid header
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.sockets[0]
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE and friends: back off, keep listening
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._connection(conn, peer))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connection(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.setblocking(False)
        try:
            if not trusted_source(peer[0], self._trusted):
                raise HeaderError("not a trusted PROXY protocol source")
            async with asyncio.timeout(self._header_timeout):
                header = await read_header(conn)
        except (HeaderError, TimeoutError, OSError) as exc:
            self.refused += 1
            log.warning("%s:%d: connection refused: %s", peer[0], peer[1], exc or "timed out")
            conn.close()
            return
        addresses = {}
        if header.source is not None and header.destination is not None:
            addresses = {"peername": header.source, "sockname": header.destination}
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: ByteStream(self._factory, addresses),
                conn,
                ssl=self._ssl,
                ssl_handshake_timeout=self._tls_timeout if self._ssl else None,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.debug("%s:%d: TLS handshake failed: %s", peer[0], peer[1], exc)
            conn.close()

    def close(self) -> None:
        """Stop accepting; connections being set up are dropped, established ones go on."""
        self._task.cancel()
        for task in list(self._pending):
            task.cancel()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    async def wait_closed(self) -> None:
        """Wait for the accept loop to end."""
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def start_proxied_server(
    host: str,
    port: int,
    receiver_factory: Callable[[ByteStream], Receiver],
    *,
    ssl_context: ssl.SSLContext | None,
    trusted: Sequence[IPNetwork],
    header_timeout: float = 10.0,
    tls_handshake_timeout: float = 10.0,
    reuse_port: bool = False,
    backlog: int = 1024,
) -> ProxiedServer:
    """Listen on ``host:port`` for connections that begin with a PROXY header."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return ProxiedServer(
        sock,
        receiver_factory,
        ssl_context=ssl_context,
        trusted=trusted,
        header_timeout=header_timeout,
        tls_handshake_timeout=tls_handshake_timeout,
    )
