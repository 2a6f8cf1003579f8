"""gRPC awareness: answers the proxy makes itself become gRPC statuses, ``grpc-timeout`` bounds
the upstream exchange.

A gRPC client reads the status from ``grpc-status`` in the trailers, not from the HTTP status,
so an error page would surface as a vague UNKNOWN or UNAVAILABLE "bad HTTP status". The proxy's
own answers to gRPC requests over HTTP/2 and HTTP/3 are therefore "trailers-only" responses:
HTTP 200, ``content-type: application/grpc``, ``grpc-status`` and ``grpc-message``, as the gRPC
HTTP/2 protocol spells out (PROTOCOL-HTTP2.md; the HTTP-to-gRPC status mapping follows
http-grpc-status-mapping.md, with 504 as DEADLINE_EXCEEDED since the proxy's 504 is a timeout).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from protocols.messages import Headers

from .http import RequestHeader

__all__ = ["GRPC_STATUS", "grpc_timeout", "is_grpc", "trailers_only"]

GRPC_STATUS = {
    400: 13,  # INTERNAL
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 12,  # UNIMPLEMENTED
    405: 12,
    408: 4,  # DEADLINE_EXCEEDED
    413: 8,  # RESOURCE_EXHAUSTED
    425: 14,  # UNAVAILABLE
    429: 14,
    431: 8,
    500: 13,
    501: 12,
    502: 14,
    503: 14,
    504: 4,
}
"""HTTP status of a proxy-made answer -> gRPC status code (2 UNKNOWN for the rest)."""

_TIMEOUT = re.compile(rb"(\d{1,8})([HMSmun])")
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def is_grpc(request: RequestHeader, protocol: str) -> bool:
    """A gRPC call (not gRPC-Web) over HTTP/2 or HTTP/3."""
    if protocol not in ("h2", "h3"):
        return False
    content_type = (request.get("content-type") or "").lower()
    return content_type.startswith("application/grpc") and not content_type.startswith(
        "application/grpc-web"
    )


def trailers_only(status: int, message: str) -> Headers:
    """The head of a trailers-only gRPC response for an HTTP ``status`` the proxy chose."""
    code = GRPC_STATUS.get(status, 2)
    return [
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(code).encode()),
        (b"grpc-message", quote(message.strip(), safe=" !#$&'()*+,/:;=?@[]~").encode()),
    ]


def grpc_timeout(request: RequestHeader) -> float | None:
    """The call's ``grpc-timeout`` in seconds; None when absent or malformed (ignored, as
    Envoy does)."""
    value = request.get("grpc-timeout")
    if value is None:
        return None
    match = _TIMEOUT.fullmatch(value.strip().encode())
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]
