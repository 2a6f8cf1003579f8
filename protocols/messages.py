"""Normalized request and response heads, header lists and the hop-by-hop rules."""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "HOP_BY_HOP",
    "Headers",
    "RequestHead",
    "ResponseHead",
    "get_all",
    "get_header",
    "remove_headers",
    "strip_hop_by_hop",
    "validate_field_name",
    "validate_field_value",
]

Headers = list[tuple[bytes, bytes]]
"""Header fields in order, names lowercase, no pseudo-headers."""

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"http2-settings",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request as every protocol sees it: the four pseudo-header values plus the header list.

    ``authority`` comes from ``:authority`` (h2/h3) or the Host header (h1); ``headers`` never
    contains ``host`` or pseudo-headers. ``http_version`` is ``b"1.0"``, ``b"1.1"``, ``b"2"`` or
    ``b"3"``.
    """

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    headers: Headers
    http_version: bytes = b"1.1"

    def with_headers(self, headers: Headers) -> RequestHead:
        """A copy with another header list."""
        return replace(self, headers=headers)


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A response status line and header list (no pseudo-headers)."""

    status: int
    headers: Headers
    reason: bytes = b""

    def with_headers(self, headers: Headers) -> ResponseHead:
        """A copy with another header list."""
        return replace(self, headers=headers)


def get_header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of ``name`` (lowercase), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def get_all(headers: Headers, name: bytes) -> list[bytes]:
    """Every value of ``name`` (lowercase), in order."""
    return [value for key, value in headers if key == name]


def remove_headers(headers: Headers, names: frozenset[bytes] | set[bytes]) -> Headers:
    """A new list without the named fields."""
    return [(key, value) for key, value in headers if key not in names]


def strip_hop_by_hop(headers: Headers) -> Headers:
    """Remove the hop-by-hop fields of RFC 9110 section 7.6.1, including those named by Connection.

    ``te: trailers`` is the one hop-by-hop field h2 and h3 allow; it is removed too, the proxy adds
    it again where the next hop needs it.
    """
    named = set(HOP_BY_HOP)
    for value in get_all(headers, b"connection"):
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                named.add(token)
    return remove_headers(headers, named)


_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def validate_field_name(name: bytes) -> bool:
    """True when ``name`` is a non-empty lowercase token (RFC 9110 section 5.1)."""
    return bool(name) and all(c in _TOKEN_CHARS for c in name)


def validate_field_value(value: bytes) -> bool:
    """True when ``value`` has no CR, LF or NUL and no leading or trailing whitespace."""
    if b"\r" in value or b"\n" in value or b"\x00" in value:
        return False
    return not value or (value[0] not in b" \t" and value[-1] not in b" \t")
