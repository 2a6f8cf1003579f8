"""Read QUIC datagrams on the wire: split coalesced packets, name their types, and decrypt Initial
packets (their keys derive from a public connection ID) to see the TLS ClientHello/ServerHello.

Nothing here raises on malformed input: unparsable bytes end the walk.
"""

from __future__ import annotations

from dataclasses import dataclass

from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic.crypto import CryptoError, CryptoPair
from aioquic.quic.packet import QuicPacketType, pull_quic_header

V1 = 0x00000001
V2 = 0x6B3343CF

# long-header type bits (first byte & 0x30) >> 4, per version
_V1_TYPES = ("initial", "0rtt", "handshake", "retry")
_V2_TYPES = ("retry", "initial", "0rtt", "handshake")

EXT_ALPN = 16
EXT_PRE_SHARED_KEY = 41


@dataclass(frozen=True, slots=True)
class Packet:
    """One QUIC packet of a datagram: its kind ("initial", "1rtt", "vn", ...), version, size."""

    kind: str
    version: int
    size: int
    dcid: bytes = b""
    scid: bytes = b""
    offset: int = 0  # where it starts in the datagram
    payload_offset: int = 0  # where its protected packet number starts (long headers)


def long_type(first: int, version: int) -> str:
    """The long-header packet type name for ``version`` (v2 permutes the type bits)."""
    if version == 0:
        return "vn"
    names = _V2_TYPES if version == V2 else _V1_TYPES
    return names[(first & 0x30) >> 4]


def split(datagram: bytes, limit: int = 8) -> list[Packet]:
    """The packets coalesced in ``datagram`` (at most ``limit``); stops at the first bad one."""
    packets: list[Packet] = []
    offset = 0
    while offset < len(datagram) and len(packets) < limit:
        first = datagram[offset]
        if not first & 0x80:
            packets.append(Packet("1rtt", 0, len(datagram) - offset, offset=offset))
            break
        buf = Buffer(data=datagram[offset:])
        try:
            header = pull_quic_header(buf, host_cid_length=8)
        except (BufferReadError, ValueError, KeyError, IndexError):
            packets.append(Packet("invalid", 0, len(datagram) - offset, offset=offset))
            break
        version = header.version or 0
        kind = long_type(first, version)
        size = header.packet_length if header.packet_type != QuicPacketType.RETRY else buf.capacity
        packets.append(
            Packet(
                kind,
                version,
                size,
                header.destination_cid,
                header.source_cid,
                offset,
                buf.tell(),
            )
        )
        if size <= 0 or kind in ("vn", "retry"):
            break
        offset += size
    return packets


def decrypt_initial(
    datagram: bytes, packet: Packet, key_cid: bytes, *, from_client: bool
) -> bytes | None:
    """The plaintext frames of an Initial ``packet`` protected with keys from ``key_cid``."""
    pair = CryptoPair()
    try:
        pair.setup_initial(cid=key_cid, is_client=not from_client, version=packet.version)
        raw = datagram[packet.offset : packet.offset + packet.size]
        _, payload, _ = pair.decrypt_packet(raw, packet.payload_offset, 0)
    except (CryptoError, ValueError, IndexError, KeyError, BufferReadError):
        return None
    return payload


def crypto_data(frames: bytes, limit: int = 64) -> dict[int, bytes]:
    """CRYPTO frame data by offset in a decrypted Initial payload (PADDING, PING, ACK skipped)."""
    found: dict[int, bytes] = {}
    buf = Buffer(data=frames)
    try:
        for _ in range(limit):
            if buf.eof():
                break
            kind = buf.pull_uint_var()
            if kind in (0x00, 0x01):
                continue
            if kind in (0x02, 0x03):
                buf.pull_uint_var(), buf.pull_uint_var()
                for _ in range(1 + 2 * buf.pull_uint_var()):
                    buf.pull_uint_var()
                if kind == 0x03:
                    for _ in range(3):
                        buf.pull_uint_var()
            elif kind == 0x06:
                start = buf.pull_uint_var()
                found[start] = buf.pull_bytes(buf.pull_uint_var())
            else:
                break  # CONNECTION_CLOSE or anything else: stop
    except BufferReadError:
        pass
    return found


def contiguous(chunks: dict[int, bytes]) -> bytes:
    """The bytes from offset 0 as far as ``chunks`` reach without a gap."""
    data = b""
    while len(data) in chunks:
        piece = chunks[len(data)]
        if not piece:
            break
        data += piece
    return data


@dataclass(frozen=True, slots=True)
class Hello:
    """What matters of a ClientHello (type 1) or ServerHello (type 2)."""

    kind: int
    ciphers: tuple[int, ...]
    extensions: tuple[int, ...]
    alpn: tuple[str, ...] = ()


def parse_hello(data: bytes) -> Hello | None:
    """Parse a ClientHello or ServerHello at the start of ``data``; None when incomplete."""
    buf = Buffer(data=data)
    try:
        kind = buf.pull_uint8()
        length = int.from_bytes(buf.pull_bytes(3), "big")
        if kind not in (1, 2) or length > len(data) - 4:
            return None
        buf.pull_bytes(2 + 32)  # legacy version, random
        buf.pull_bytes(buf.pull_uint8())  # session id
        if kind == 1:
            raw = buf.pull_bytes(buf.pull_uint16())
            ciphers = tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2))
            buf.pull_bytes(buf.pull_uint8())  # compression methods
        else:
            ciphers = (buf.pull_uint16(),)
            buf.pull_uint8()
        end = buf.tell() + buf.pull_uint16()
        extensions: list[int] = []
        alpn: tuple[str, ...] = ()
        while buf.tell() < end and len(extensions) < 64:
            ext = buf.pull_uint16()
            body = buf.pull_bytes(buf.pull_uint16())
            extensions.append(ext)
            if ext == EXT_ALPN:
                alpn = _alpn(body)
    except BufferReadError:
        return None
    return Hello(kind, ciphers, tuple(extensions), alpn)


def _alpn(body: bytes) -> tuple[str, ...]:
    names: list[str] = []
    index = 2
    while index < len(body):
        size = body[index]
        names.append(body[index + 1 : index + 1 + size].decode("ascii", "replace"))
        index += 1 + size
    return tuple(names)
