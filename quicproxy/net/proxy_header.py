"""The PROXY protocol header (HAProxy's, versions 1 and 2): the client's addresses as a load
balancer in front of the proxy saw them, sent before any other byte of the connection.

:func:`read_header` reads exactly the header's bytes from a socket, never a byte beyond it, so
that TLS or HTTP can start on the same socket right after. Version 1 is one text line of at most
107 bytes; version 2 is a 16-byte binary prefix and the address block it announces. A LOCAL
(v2) or UNKNOWN (v1) header carries no addresses: the connection's own are kept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from dataclasses import dataclass

__all__ = ["V2_SIGNATURE", "HeaderError", "ProxiedAddresses", "parse_v1", "parse_v2", "read_header"]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the longest v1 line, CRLF included
V2_MAX_BODY = 4096  # addresses and TLVs we accept (the spec allows 65535; nobody sends that)

Address = tuple[str, int]


class HeaderError(ValueError):
    """A missing or malformed PROXY header."""


@dataclass(frozen=True, slots=True)
class ProxiedAddresses:
    """The client's address and the address it connected to; None for LOCAL/UNKNOWN."""

    source: Address | None
    destination: Address | None


_LOCAL = ProxiedAddresses(None, None)


def _ip(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise HeaderError(f"{text[:40]!r} is not an IP address") from None
    if address.version != version:
        raise HeaderError(f"{text!r} is not an IPv{version} address")
    return str(address)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535 or (text[0] == "0" and text != "0"):
        raise HeaderError(f"{text[:10]!r} is not a port")
    return int(text)


def parse_v1(line: bytes) -> ProxiedAddresses:
    """``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n`` or ``PROXY UNKNOWN ...\\r\\n``."""
    if not line.endswith(b"\r\n") or len(line) > V1_MAX:
        raise HeaderError("a v1 header is one line of at most 107 bytes ending in CRLF")
    try:
        words = line[:-2].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise HeaderError("a v1 header is ASCII") from None
    if words[0] != "PROXY" or len(words) < 2:
        raise HeaderError("a v1 header starts with 'PROXY '")
    if words[1] == "UNKNOWN":
        return _LOCAL
    if words[1] not in ("TCP4", "TCP6") or len(words) != 6:
        raise HeaderError("expected PROXY TCP4|TCP6 SRC DST SPORT DPORT")
    version = 4 if words[1] == "TCP4" else 6
    return ProxiedAddresses(
        (_ip(words[2], version), _port(words[4])), (_ip(words[3], version), _port(words[5]))
    )


def v2_length(prefix: bytes) -> int:
    """The length of the address block that follows a 16-byte v2 prefix."""
    if len(prefix) != 16 or not prefix.startswith(V2_SIGNATURE):
        raise HeaderError("not a v2 header")
    if prefix[12] >> 4 != 2:
        raise HeaderError(f"unknown PROXY protocol version {prefix[12] >> 4}")
    (length,) = struct.unpack("!H", prefix[14:16])
    if length > V2_MAX_BODY:
        raise HeaderError(f"a v2 address block of {length} bytes is over {V2_MAX_BODY}")
    return int(length)


def parse_v2(prefix: bytes, body: bytes) -> ProxiedAddresses:
    """A v2 header: the 16-byte prefix and its address block (TLVs after it are ignored)."""
    if len(body) != v2_length(prefix):
        raise HeaderError("the v2 address block is cut short")
    command, family = prefix[12] & 0x0F, prefix[13]
    if command == 0:  # LOCAL: the balancer's own connection (a health check)
        return _LOCAL
    if command != 1:
        raise HeaderError(f"unknown v2 command {command}")
    kind, transport = family >> 4, family & 0x0F
    if transport not in (0, 1):  # UNSPEC or STREAM; DGRAM makes no sense on TCP
        raise HeaderError("a v2 header on TCP must describe a stream")
    if kind == 1 and len(body) >= 12:
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
        family_id = socket.AF_INET
    elif kind == 2 and len(body) >= 36:
        src, dst, sport, dport = struct.unpack("!16s16sHH", body[:36])
        family_id = socket.AF_INET6
    elif kind == 0:
        return _LOCAL  # UNSPEC: addresses unknown
    else:
        raise HeaderError("the v2 address block is too short for its family")
    return ProxiedAddresses(
        (socket.inet_ntop(family_id, src), sport), (socket.inet_ntop(family_id, dst), dport)
    )


async def _exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise HeaderError("the connection closed before the PROXY header ended")
        data += chunk
    return bytes(data)


async def read_header(sock: socket.socket) -> ProxiedAddresses:
    """Read one v1 or v2 header from ``sock`` (non-blocking); bound it with a timeout."""
    loop = asyncio.get_running_loop()
    start = await _exactly(loop, sock, 8)
    if start == V2_SIGNATURE[:8]:
        prefix = start + await _exactly(loop, sock, 8)
        return parse_v2(prefix, await _exactly(loop, sock, v2_length(prefix)))
    if not start.startswith(b"PROXY "):
        raise HeaderError("the connection did not start with a PROXY header")
    line = bytearray(start)
    while not line.endswith(b"\r\n"):  # byte by byte: nothing after the line is consumed
        if len(line) >= V1_MAX:
            raise HeaderError("a v1 header is one line of at most 107 bytes")
        line += await _exactly(loop, sock, 1)
    return parse_v1(bytes(line))
