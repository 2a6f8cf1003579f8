"""PROXY protocol v1 and v2 headers: parsing, and reading exactly the header off a socket."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from quicproxy.net.proxy_header import (
    V2_SIGNATURE,
    HeaderError,
    ProxiedAddresses,
    parse_v1,
    parse_v2,
    read_header,
)


def v2(command: int, family: int, body: bytes) -> tuple[bytes, bytes]:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)), body


def test_v1_tcp4_tcp6_and_unknown() -> None:
    got = parse_v1(b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n")
    assert got == ProxiedAddresses(("203.0.113.7", 51000), ("192.0.2.1", 443))
    got = parse_v1(b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n")
    assert got == ProxiedAddresses(("2001:db8::7", 51000), ("2001:db8::1", 443))
    assert parse_v1(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n") == ProxiedAddresses(None, None)


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\n",  # LF only
        b"PROXY TCP4 2001:db8::7 192.0.2.1 51000 443\r\n",  # family mismatch
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000\r\n",  # a field missing
        b"PROXY TCP4 203.0.113.7 192.0.2.1 70000 443\r\n",  # port out of range
        b"PROXY TCP4 203.0.113.7 192.0.2.1 0443 443\r\n",  # leading zero
        b"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",
        b"PROXY  TCP4 203.0.113.7 192.0.2.1 1 2\r\n",  # two spaces
        b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2" + b" " * 80 + b"\r\n",  # over 107 bytes
    ],
)
def test_v1_malformed_is_refused(line: bytes) -> None:
    with pytest.raises(HeaderError):
        parse_v1(line)


def test_v2_ipv4_ipv6_local_and_tlvs_ignored() -> None:
    body = socket.inet_aton("203.0.113.7") + socket.inet_aton("192.0.2.1") + b"\xc7\x38\x01\xbb"
    assert parse_v2(*v2(1, 0x11, body)) == ProxiedAddresses(
        ("203.0.113.7", 51000), ("192.0.2.1", 443)
    )
    tlv = b"\x02\x00\x05hello"  # PP2_TYPE_AUTHORITY
    assert parse_v2(*v2(1, 0x11, body + tlv)).source == ("203.0.113.7", 51000)
    six = socket.inet_pton(socket.AF_INET6, "2001:db8::7") * 2 + b"\x00\x50\x00\x51"
    assert parse_v2(*v2(1, 0x21, six)).source == ("2001:db8::7", 80)
    assert parse_v2(*v2(0, 0x00, b"")) == ProxiedAddresses(None, None)  # LOCAL


@pytest.mark.parametrize(
    "header",
    [
        v2(2, 0x11, b"\x00" * 12),  # unknown command
        v2(1, 0x12, b"\x00" * 12),  # DGRAM on TCP
        v2(1, 0x11, b"\x00" * 8),  # too short for IPv4
        v2(1, 0x21, b"\x00" * 12),  # too short for IPv6
        (V2_SIGNATURE + b"\x31\x11\x00\x0c", b"\x00" * 12),  # version 3
    ],
)
def test_v2_malformed_is_refused(header: tuple[bytes, bytes]) -> None:
    with pytest.raises(HeaderError):
        parse_v2(*header)


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n",
        b"".join(v2(1, 0x11, socket.inet_aton("203.0.113.7") * 2 + b"\xc7\x38\x01\xbb")),
    ],
)
async def test_reading_stops_exactly_at_the_end_of_the_header(header: bytes) -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    with ours, theirs:
        hello = b"\x16\x03\x01 the TLS ClientHello that follows"
        for index in range(0, len(header), 5):  # trickled in small pieces
            theirs.sendall(header[index : index + 5])
        theirs.sendall(hello)
        got = await asyncio.wait_for(read_header(ours), 5)
        assert got.source == ("203.0.113.7", 51000)
        ours.setblocking(True)
        assert ours.recv(100) == hello  # not one byte of what follows was consumed


async def test_a_connection_without_a_header_is_refused() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    with ours, theirs:
        theirs.sendall(b"GET / HTTP/1.1\r\n\r\n")
        with pytest.raises(HeaderError, match="did not start with a PROXY header"):
            await asyncio.wait_for(read_header(ours), 5)
        theirs.close()
