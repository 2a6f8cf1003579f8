"""The UDP endpoint: one socket per listener, datagrams in by callback, batched sends out (GSO)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any, cast

__all__ = ["UdpEndpoint", "open_udp_endpoint"]

log = logging.getLogger("quicproxy.net.udp")

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = 103  # Linux: send one buffer as several equal-sized datagrams (GSO)
SOCKET_BUFFER = 4 * 1024 * 1024
MAX_GSO_SEGMENTS = 64
MAX_GSO_BYTES = 65000  # one UDP send carries at most 65,507 bytes of payload

Address = tuple[Any, ...]


class UdpEndpoint(asyncio.DatagramProtocol):
    """Delivers each datagram to ``on_datagram`` synchronously; sends single or batched."""

    def __init__(self, sock: socket.socket, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.sock = sock
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None
        self.gso = hasattr(socket, "SOL_UDP") and sock.family in (socket.AF_INET, socket.AF_INET6)
        self.datagrams_sent = 0
        self.syscalls = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    @property
    def local_address(self) -> Address:
        """The bound address."""
        return tuple(self.sock.getsockname())

    def send(self, datagrams: list[tuple[bytes, Address]]) -> None:
        """Send datagrams in order; runs of equal-sized ones to one address go in one syscall."""
        index = 0
        count = len(datagrams)
        while index < count:
            data, addr = datagrams[index]
            end = index + 1
            if self.gso:
                size = len(data)
                while (
                    end < count
                    and end - index < MAX_GSO_SEGMENTS
                    and (end - index + 1) * size <= MAX_GSO_BYTES
                    and datagrams[end][1] == addr
                    and len(datagrams[end - 1][0]) == size
                    and len(datagrams[end][0]) <= size
                ):
                    end += 1
            if end - index > 1 and self._send_gso(datagrams[index:end], addr):
                index = end
                continue
            self._sendto(data, addr)
            index += 1

    def _send_gso(self, run: list[tuple[bytes, Address]], addr: Address) -> bool:
        size = len(run[0][0])
        try:
            self.sock.sendmsg(
                [b"".join(data for data, _ in run)],
                [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))],
                0,
                addr,
            )
        except BlockingIOError:
            return False
        except OSError as exc:
            log.info("UDP GSO unavailable (%s); sending datagrams one by one", exc)
            self.gso = False
            return False
        self.datagrams_sent += len(run)
        self.syscalls += 1
        return True

    def _sendto(self, data: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)
            self.datagrams_sent += 1
            self.syscalls += 1

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()


async def open_udp_endpoint(
    host: str,
    port: int,
    on_datagram: Callable[[bytes, Address], None],
    *,
    reuse_port: bool = False,
    sock: socket.socket | None = None,
) -> UdpEndpoint:
    """Bind a UDP socket (IPv6 sockets are v6-only, so v4 and v6 can share a port number), or
    serve ``sock``, one bound already (a worker's steered socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bound = sock is not None
    sock = sock or socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port and not bound:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and not bound:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        if not bound:
            sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    loop = asyncio.get_running_loop()
    endpoint = UdpEndpoint(sock, on_datagram)
    await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
    return endpoint
