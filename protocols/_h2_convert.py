"""Pure helpers for protocols.h2: heads <-> h2 header lists, and the GOAWAY framing h2 lacks.

Nothing here holds a connection. ``FrameScanner`` exists because h2 treats every GOAWAY, sent or
received, as the immediate end of the connection (python-hyper/h2 issue #1181), whereas RFC 9113
section 6.8 lets the streams at or below the last stream id finish. The adapter therefore sends a
graceful GOAWAY as raw bytes and takes graceful GOAWAY frames out of the inbound byte stream before
h2 sees them; GOAWAY frames carrying an error code still go to h2, which ends the connection.
Reading frame headers also lets it refuse an oversized frame at once, where h2 would first buffer
up to 16 MiB of it, cut a header block (HEADERS + CONTINUATIONs) that grows beyond a byte cap before
h2 buffers it whole (CVE-2024-27316), and report every frame's header (``FrameHead``) in wire order
for the flood budget (``useful_frame`` / ``idle_frame`` classify them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from h2.exceptions import ProtocolError as H2ProtocolError
from h2.utilities import HeaderValidationFlags, validate_headers
from hpack import Decoder

from ._message_checks import authority_problem, declared_length, path_problem
from .messages import Headers, RequestHead, ResponseHead, validate_field_name

__all__ = [
    "CONNECTION_SPECIFIC",
    "CappedDecoder",
    "Fields",
    "FrameHead",
    "FrameScanner",
    "bad_fields",
    "bad_request",
    "error_response",
    "goaway_frame",
    "idle_frame",
    "outbound_fields",
    "request_fields",
    "request_head",
    "response_fields",
    "response_head",
    "trailer_fields",
    "useful_frame",
]

CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)
"""Fields HTTP/2 forbids (RFC 9113 section 8.2.2); ``host`` is carried as ``:authority``."""

Fields = list[tuple[bytes, bytes]]

_PREFACE_LEN = 24
_FRAME_HEADER_LEN = 9
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
_PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
_HEADER_BLOCK_TYPES = frozenset({_HEADERS, _PUSH_PROMISE, _CONTINUATION})
_CUT_BEFORE = frozenset({_DATA, _RST_STREAM})  # classified against the streams h2 knows
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 0x1, 0x1, 0x4, 0x8
_STREAM_ID_MASK = 0x7FFFFFFF
_FREE_CONTINUATIONS = 4  # CONTINUATIONs of one block that do not count as idle frames
_IDLE_NAMES = {
    _PRIORITY: "PRIORITY",
    _SETTINGS: "SETTINGS",
    _PING: "PING",
    _WINDOW_UPDATE: "WINDOW_UPDATE",
}


@dataclass(frozen=True, slots=True)
class FrameHead:
    """One received frame's header, as ``FrameScanner`` saw it (wire order)."""

    kind: int
    flags: int
    stream_id: int
    payload: int  # DATA: body bytes without padding; other frames: the payload length
    first: bool = False  # HEADERS opening a new stream; the peer's first SETTINGS (its preface)
    fragment: int = 0  # CONTINUATION: its index in the header block (1 = first)


def useful_frame(head: FrameHead, known: bool) -> bool:
    """True for frames that do work: a new request's HEADERS, DATA with body bytes for a
    stream the owner reads (``known``)."""
    if head.kind in (_HEADERS, _SETTINGS):
        return head.first
    return head.kind == _DATA and known and head.payload > 0


def idle_frame(head: FrameHead, known: bool, *, exists: bool) -> str | None:
    """The name of a frame that makes us queue a reply or do no work, else None.

    ``known``: the frame's stream is one the owner still reads (for DATA); ``exists``: the
    adapter still tracks the stream (for RST_STREAM: a reset of such a stream is counted as a
    premature reset instead, by the adapter, when its response had not completed).
    """
    kind = head.kind
    if kind == _DATA:
        if not known:
            return "DATA for a closed stream"
        if head.payload == 0 and not head.flags & _END_STREAM:
            return "empty DATA"
        return None
    if kind == _RST_STREAM:
        return None if exists else "RST_STREAM for an idle or closed stream"
    if kind == _HEADERS:
        return None if head.first else "HEADERS for an old stream"
    if kind == _CONTINUATION:
        return "CONTINUATION" if head.fragment > _FREE_CONTINUATIONS else None
    if kind in (_SETTINGS, _PING) and head.flags & _ACK:
        return "PING ACK" if kind == _PING else None  # we never PING; SETTINGS ACKs are ours
    if kind == _GOAWAY:
        return None
    return _IDLE_NAMES.get(kind, f"frame type {kind:#x}")


class CappedDecoder(Decoder):
    """An HPACK decoder whose decoded-size cap stays fixed: h2 would lower it to our advertised
    SETTINGS_MAX_HEADER_LIST_SIZE on the SETTINGS ACK, making an oversized request a connection
    error (DenialOfServiceError). With a higher hard cap the adapter decodes the whole block
    (the HPACK table stays in step) and answers 431 on that stream alone."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        super().__init__(max_header_list_size=cap)

    @property
    def max_header_list_size(self) -> int:
        return self._cap

    @max_header_list_size.setter
    def max_header_list_size(self, value: int) -> None:
        """Ignored: the cap is fixed at construction."""


def outbound_fields(headers: Headers) -> Fields:
    """Regular fields for an h2 header block: lowercase, without pseudo-headers, without the
    connection-specific fields, and with ``te`` only when it is ``trailers``."""
    fields: Fields = []
    for name, value in headers:
        name = name.lower()
        if name[:1] == b":" or name in CONNECTION_SPECIFIC:
            continue
        if name == b"te" and value.strip().lower() != b"trailers":
            continue
        fields.append((name, value))
    return fields


def bad_fields(fields: Fields) -> str | None:
    """Why h2 must not be given ``fields`` (regular part), or None when they are sendable.

    h2 validates lazily while it HPACK-encodes, so a late failure would leave the encoder's
    dynamic table out of step with the peer; everything is checked here first.
    """
    for name, value in fields:
        if name[:1] != b":" and not validate_field_name(name):
            return f"invalid field name {name!r}"
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            return f"invalid value for field {name!r}"
    return None


def request_fields(head: RequestHead) -> Fields:
    """The full h2 header block of a request (pseudo-headers first)."""
    fields: Fields = [(b":method", head.method)]
    if head.method != b"CONNECT":
        fields.append((b":scheme", head.scheme))
    fields.append((b":authority", head.authority))
    if head.method != b"CONNECT":
        fields.append((b":path", head.path))
    fields.extend(outbound_fields(head.headers))
    return fields


def response_fields(head: ResponseHead) -> Fields:
    """The full h2 header block of a response or 1xx (``:status`` first)."""
    return [(b":status", str(head.status).encode()), *outbound_fields(head.headers)]


def trailer_fields(trailers: Headers) -> Fields:
    """A trailer block: regular fields only."""
    return outbound_fields(trailers)


def malformed(
    raw: Iterable[tuple[bytes, bytes]], *, client: bool, trailer: bool = False
) -> str | None:
    """Why a received header block breaks RFC 9113 section 8 (uppercase names, missing,
    duplicate or misplaced pseudo-headers, connection-specific fields, TE other than
    "trailers"...), or None. h2's own checks, run here so that a malformed message is an error
    of its stream only (RFC 9113 section 8.1.1), not of the whole connection."""
    flags = HeaderValidationFlags(
        is_client=client,
        is_trailer=trailer,
        is_response_header=client and not trailer,
        is_push_promise=False,
    )
    try:
        for _ in validate_headers(list(raw), flags):
            pass
    except H2ProtocolError as exc:
        return str(exc) or "malformed header block"
    return None


def request_head(raw: Iterable[tuple[bytes, bytes]]) -> RequestHead | str:
    """Turn a received request header block into a RequestHead, or say why it is malformed
    (``malformed`` first, then the per-request rules below)."""
    raw = list(raw)
    problem = malformed(raw, client=False)
    if problem is not None:
        return problem
    method: bytes | None = None
    scheme: bytes | None = None
    authority: bytes | None = None
    path: bytes | None = None
    protocol: bytes | None = None
    length_kept: bytes | None = None
    host: bytes | None = None
    headers: Headers = []
    length = declared_length(raw)
    if isinstance(length, str):
        return length
    for name, value in raw:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":scheme":
                scheme = value
            elif name == b":authority":
                authority = value
            elif name == b":path":
                path = value
            elif name == b":protocol":
                protocol = value
        elif name == b"host":
            if host is None:
                host = value
        elif not validate_field_name(name):
            return f"invalid field name {name!r}"
        elif name != b"content-length" or length_kept is None:
            headers.append((name, value))  # repeated equal content-lengths collapse into one
            if name == b"content-length":
                length_kept = value
    if not method:
        return "missing :method"
    if protocol is not None:
        return "extended CONNECT is not supported"
    if authority is None:
        authority = host if host is not None else b""
    if method == b"CONNECT":
        if not authority:
            return "CONNECT without :authority"
        return RequestHead(method, b"", authority, b"", headers, http_version=b"2")
    if not scheme:
        return "missing :scheme"
    if path is None:
        return "missing :path"
    problem = path_problem(method, path)
    if problem is not None:
        return problem
    if not authority and scheme in (b"http", b"https"):
        return "missing :authority"
    problem = authority_problem(authority)
    if problem is not None:
        return problem
    return RequestHead(method, scheme, authority, path, headers, http_version=b"2")


def response_head(raw: Iterable[tuple[bytes, bytes]]) -> ResponseHead | str:
    """Turn a received response header block into a ResponseHead, or say why it is malformed."""
    raw = list(raw)
    problem = malformed(raw, client=True)
    if problem is not None:
        return problem
    status = b""
    headers: Headers = []
    for name, value in raw:
        if name == b":status":
            status = value
        elif name[:1] != b":":
            headers.append((name, value))
    if len(status) != 3 or not status.isdigit() or status[:1] == b"0":
        return f"invalid :status {status!r}"
    return ResponseHead(int(status), headers)


def bad_request(reason: str) -> tuple[Fields, bytes]:
    """A 400 response (``:status``, ``content-type``, ``content-length``) and its text body."""
    return error_response(400, reason)


def error_response(status: int, reason: str) -> tuple[Fields, bytes]:
    """An error response head (``:status``, ``content-type``, ``content-length``) and body."""
    label = "request header fields too large" if status == 431 else "bad request"
    body = f"{label}: {reason}\n".encode()
    fields = [(b":status", str(status).encode()), (b"content-type", b"text/plain")]
    return [*fields, (b"content-length", str(len(body)).encode())], body


def goaway_frame(last_stream_id: int, error_code: int) -> bytes:
    """A GOAWAY frame without debug data."""
    payload = (last_stream_id & _STREAM_ID_MASK).to_bytes(4, "big") + error_code.to_bytes(4, "big")
    header = len(payload).to_bytes(3, "big") + bytes((_GOAWAY, 0)) + bytes(4)
    return header + payload


class FrameScanner:
    """Splits inbound bytes around graceful (NO_ERROR) GOAWAY frames, with frame state across reads.

    Only frame headers are parsed; every other byte passes through unchanged and in order. A GOAWAY
    that is malformed or inside a header block is left to h2, which rejects it. A frame longer
    than the allowed maximum sets ``oversized``, a header block longer than ``max_block`` bytes
    sets ``block_overflow``; either stops the scan before the frame's header.

    Each frame's ``FrameHead`` is emitted in wire order among the parts. DATA and RST_STREAM are
    classified against the streams h2 knows, so the bytes before them form a part of their own
    (h2 has processed every earlier frame when their head is handled); a padded DATA frame's
    head waits for its pad length byte.
    """

    def __init__(self, *, server: bool, max_block: int = 1 << 30) -> None:
        self._preface = _PREFACE_LEN if server else 0
        self._max_block = max_block
        self._header = bytearray()
        self._left = 0  # payload bytes of the frame being passed through
        self._goaway: bytearray | None = None  # payload of a GOAWAY being held back
        self._goaway_header = b""
        self._goaway_left = 0
        self._padded: bytes | None = None  # header of a padded DATA frame awaiting its pad length
        self._in_block = False  # a HEADERS/PUSH_PROMISE awaits its CONTINUATIONs
        self._block_bytes = 0
        self._fragments = 0
        self._highest_headers = 0
        self._settings_seen = False
        self.oversized = False
        self.block_overflow = False

    def split(self, data: bytes, max_frame_size: int) -> list[bytearray | int | FrameHead]:
        """Bytes for h2, frame heads and, between them in order, the last stream id of each
        graceful GOAWAY."""
        out: list[bytearray | int | FrameHead] = []
        feed = bytearray()
        view = memoryview(data)
        i, n = 0, len(data)
        while i < n:
            if self._preface:
                take = min(self._preface, n - i)
                feed += view[i : i + take]
                self._preface -= take
            elif self._left:
                take = min(self._left, n - i)
                feed += view[i : i + take]
                self._left -= take
            elif self._padded is not None:
                take, header, self._padded = 1, self._padded, None
                length = int.from_bytes(header[:3], "big")
                out.append(self._head(header, max(0, length - 1 - data[i])))
                feed += header
                feed += view[i : i + 1]
                self._left = length - 1
            elif self._goaway is not None:
                take = min(self._goaway_left, n - i)
                self._goaway += view[i : i + take]
                self._goaway_left -= take
                if not self._goaway_left:
                    payload, self._goaway = bytes(self._goaway), None
                    if int.from_bytes(payload[4:8], "big") == 0:
                        if feed:
                            out.append(feed)
                            feed = bytearray()
                        out.append(int.from_bytes(payload[:4], "big") & _STREAM_ID_MASK)
                    else:
                        feed += self._goaway_header
                        feed += payload
            else:
                take = min(_FRAME_HEADER_LEN - len(self._header), n - i)
                self._header += view[i : i + take]
                if len(self._header) == _FRAME_HEADER_LEN:
                    header = bytes(self._header)
                    if int.from_bytes(header[:3], "big") > max_frame_size:
                        self.oversized = True
                        break
                    if header[3] in _CUT_BEFORE and feed:
                        out.append(feed)
                        feed = bytearray()
                    if not self._frame_header(header, feed, out):
                        break
                    self._header.clear()
            i += take
        if feed:
            out.append(feed)
        return out

    def _frame_header(
        self, header: bytes, feed: bytearray, out: list[bytearray | int | FrameHead]
    ) -> bool:
        """Handle one complete frame header; False when the scan must stop."""
        length = int.from_bytes(header[:3], "big")
        kind, flags = header[3], header[4]
        stream_id = int.from_bytes(header[5:9], "big") & _STREAM_ID_MASK
        if kind == _GOAWAY and stream_id == 0 and length >= 8 and not self._in_block:
            out.append(FrameHead(kind, flags, stream_id, length))
            self._goaway = bytearray()
            self._goaway_header = header
            self._goaway_left = length
            return True
        if kind in _HEADER_BLOCK_TYPES:
            if kind == _CONTINUATION:
                self._block_bytes += length
                self._fragments += 1
            else:
                self._block_bytes, self._fragments = length, 0
            if self._block_bytes > self._max_block:
                self.block_overflow = True
                return False
            self._in_block = not flags & _END_HEADERS
        if kind == _DATA and flags & _PADDED and length:
            self._padded = header  # the head goes out once the pad length byte is known
            return True
        out.append(self._head(header, length))
        feed += header
        self._left = length
        return True

    def _head(self, header: bytes, payload: int) -> FrameHead:
        kind, stream_id = header[3], int.from_bytes(header[5:9], "big") & _STREAM_ID_MASK
        first = False
        if kind == _HEADERS and stream_id > self._highest_headers:
            first, self._highest_headers = True, stream_id
        elif kind == _SETTINGS and not header[4] & _ACK and not self._settings_seen:
            first = self._settings_seen = True
        fragment = self._fragments if kind == _CONTINUATION else 0
        return FrameHead(kind, header[4], stream_id, payload, first, fragment)
