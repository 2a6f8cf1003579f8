"""Pure helpers for protocols.h2: heads <-> h2 header lists, and the GOAWAY framing h2 lacks.

Nothing here holds a connection. ``FrameScanner`` exists because h2 treats every GOAWAY, sent or
received, as the immediate end of the connection (python-hyper/h2 issue #1181), whereas RFC 9113
section 6.8 lets the streams at or below the last stream id finish. The adapter therefore sends a
graceful GOAWAY as raw bytes and takes graceful GOAWAY frames out of the inbound byte stream before
h2 sees them; GOAWAY frames carrying an error code still go to h2, which ends the connection.
Reading frame headers also lets it refuse an oversized frame at once, where h2 would first buffer
up to 16 MiB of it.
"""

from __future__ import annotations

from collections.abc import Iterable

from h2.exceptions import ProtocolError as H2ProtocolError
from h2.utilities import HeaderValidationFlags, validate_headers

from .messages import Headers, RequestHead, ResponseHead, validate_field_name

__all__ = [
    "CONNECTION_SPECIFIC",
    "Fields",
    "FrameScanner",
    "bad_fields",
    "bad_request",
    "goaway_frame",
    "outbound_fields",
    "request_fields",
    "request_head",
    "response_fields",
    "response_head",
    "trailer_fields",
]

CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)
"""Fields HTTP/2 forbids (RFC 9113 section 8.2.2); ``host`` is carried as ``:authority``."""

Fields = list[tuple[bytes, bytes]]

_PREFACE_LEN = 24
_FRAME_HEADER_LEN = 9
_GOAWAY = 0x7
_HEADER_BLOCK_TYPES = frozenset({0x1, 0x5, 0x9})  # HEADERS, PUSH_PROMISE, CONTINUATION
_END_HEADERS = 0x4
_STREAM_ID_MASK = 0x7FFFFFFF


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
    host: bytes | None = None
    headers: Headers = []
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
        else:
            headers.append((name, value))
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
    if not path:
        return "missing :path"
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        return "invalid :path"
    if not authority and scheme in (b"http", b"https"):
        return "missing :authority"
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
    body = f"bad request: {reason}\n".encode()
    fields = [(b":status", b"400"), (b"content-type", b"text/plain")]
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
    than the allowed maximum sets ``oversized`` and stops the scan before its header.
    """

    def __init__(self, *, server: bool) -> None:
        self._preface = _PREFACE_LEN if server else 0
        self._header = bytearray()
        self._left = 0  # payload bytes of the frame being passed through
        self._goaway: bytearray | None = None  # payload of a GOAWAY being held back
        self._goaway_header = b""
        self._goaway_left = 0
        self._in_block = False  # a HEADERS/PUSH_PROMISE awaits its CONTINUATIONs
        self.oversized = False

    def split(self, data: bytes, max_frame_size: int) -> list[bytearray | int]:
        """Bytes for h2 and, between them in order, the last stream id of each graceful GOAWAY."""
        out: list[bytearray | int] = []
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
                    if int.from_bytes(self._header[:3], "big") > max_frame_size:
                        self.oversized = True
                        break
                    self._frame_header(bytes(self._header), feed)
                    self._header.clear()
            i += take
        if feed:
            out.append(feed)
        return out

    def _frame_header(self, header: bytes, feed: bytearray) -> None:
        length = int.from_bytes(header[:3], "big")
        kind, flags = header[3], header[4]
        stream_id = int.from_bytes(header[5:9], "big") & _STREAM_ID_MASK
        if kind == _GOAWAY and stream_id == 0 and length >= 8 and not self._in_block:
            self._goaway = bytearray()
            self._goaway_header = header
            self._goaway_left = length
            return
        if kind in _HEADER_BLOCK_TYPES:
            self._in_block = not flags & _END_HEADERS
        feed += header
        self._left = length
