"""The UDP endpoint: one socket per listener; datagrams in by callback with their ECN bits
(read in batches per wake-up), out in batches (GSO), optionally marked ECT(0).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["ECT0", "UdpEndpoint", "open_udp_endpoint"]

log = logging.getLogger("quicproxy.net.udp")

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = 103  # Linux: send one buffer as several equal-sized datagrams (GSO)
SOCKET_BUFFER = 4 * 1024 * 1024
MAX_GSO_SEGMENTS = 64
MAX_GSO_BYTES = 65000  # one UDP send carries at most 65,507 bytes of payload
MAX_DATAGRAM = 65535
READ_BATCH = 64  # datagrams read per wake-up: one busy socket cannot starve the loop
ECT0 = 0b10  # the ECN codepoint "ECN-capable transport (0)"
_CMSG_SPACE = socket.CMSG_SPACE(4)

Address = tuple[Any, ...]
DatagramHandler = Callable[[bytes, Address, int], None]
"""Called with (payload, sender, ECN bits of the IP header: 0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE)."""


def _ecn(ancdata: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == socket.IP_TOS and data:
            return data[0] & 3
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_TCLASS and len(data) >= 4:
            return int.from_bytes(data[:4], sys.byteorder) & 3
    return 0


class UdpEndpoint:
    """Reads every datagram waiting at each wake-up and hands it to ``on_datagram``
    synchronously; sends single datagrams or GSO batches, dropping what the socket buffer
    cannot take (QUIC recovers losses)."""

    def __init__(self, sock: socket.socket, on_datagram: DatagramHandler) -> None:
        self.sock = sock
        self.on_datagram = on_datagram
        self.loop = asyncio.get_running_loop()
        self.gso = hasattr(socket, "SOL_UDP") and sock.family in (socket.AF_INET, socket.AF_INET6)
        self.datagrams_sent = 0
        self.syscalls = 0
        self.dropped = 0  # sends the socket buffer refused
        self.closed = False
        self.loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(MAX_DATAGRAM, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("UDP receive error: %s", exc)
                return
            self.on_datagram(data, addr, _ecn(ancdata))
            if self.closed:
                return

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
        except (BlockingIOError, InterruptedError):
            self.dropped += len(run)
            return True  # the buffer is full: sending them one by one would not help
        except OSError as exc:
            log.info("UDP GSO unavailable (%s); sending datagrams one by one", exc)
            self.gso = False
            return False
        self.datagrams_sent += len(run)
        self.syscalls += 1
        return True

    def _sendto(self, data: bytes, addr: Address) -> None:
        if self.closed:
            return
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
            return
        except OSError as exc:
            log.debug("UDP send to %s failed: %s", addr, exc)
            return
        self.datagrams_sent += 1
        self.syscalls += 1

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


async def open_udp_endpoint(
    host: str,
    port: int,
    on_datagram: DatagramHandler,
    *,
    reuse_port: bool = False,
    sock: socket.socket | None = None,
    ecn: bool = False,
) -> UdpEndpoint:
    """Bind a UDP socket (IPv6 sockets are v6-only, so v4 and v6 can share a port number), or
    serve ``sock``, one bound already (a worker's steered socket). Incoming ECN bits are always
    reported; with ``ecn`` every outgoing packet is marked ECT(0)."""
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
        _ecn_options(sock, family, ecn)
        if not bound:
            sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return UdpEndpoint(sock, on_datagram)


def _ecn_options(sock: socket.socket, family: int, mark: bool) -> None:
    """Ask for the ECN bits of received packets; mark sent ones ECT(0) when ``mark``."""
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
            if mark:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, ECT0)
        else:
            sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVTOS", 13), 1)
            if mark:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, ECT0)
    except OSError as exc:
        log.info("ECN is not available on this socket: %s", exc)
