"""ProxyError: every failure the pipeline handles, with its source, retry policy and HTTP status."""

from __future__ import annotations

import enum

__all__ = ["ErrorKind", "ErrorSource", "ProxyError"]


class ErrorSource(enum.Enum):
    """Which side of the proxy failed."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"
    INTERNAL = "internal"


class ErrorKind(enum.Enum):
    """What failed; ``status`` is what a client sees when nothing was sent to it yet."""

    CONNECT_REFUSED = "connect_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    TLS_HANDSHAKE = "tls_handshake"
    UPSTREAM_RESET = "upstream_reset"
    UPSTREAM_PROTOCOL = "upstream_protocol"
    READ_TIMEOUT = "read_timeout"
    WRITE_TIMEOUT = "write_timeout"
    NO_UPSTREAM = "no_upstream"
    OVERLOADED = "overloaded"
    DOWNSTREAM_GONE = "downstream_gone"
    DOWNSTREAM_PROTOCOL = "downstream_protocol"
    DOWNSTREAM_TIMEOUT = "downstream_timeout"
    BODY_TOO_LARGE = "body_too_large"
    TOO_EARLY = "too_early"  # the upstream answered 425 to a request sent in 0-RTT
    INTERNAL = "internal"

    @property
    def status(self) -> int:
        """The HTTP status for this kind of failure."""
        return _STATUS[self]


_STATUS = {
    ErrorKind.TOO_EARLY: 425,
    ErrorKind.CONNECT_REFUSED: 502,
    ErrorKind.CONNECT_TIMEOUT: 504,
    ErrorKind.TLS_HANDSHAKE: 502,
    ErrorKind.UPSTREAM_RESET: 502,
    ErrorKind.UPSTREAM_PROTOCOL: 502,
    ErrorKind.READ_TIMEOUT: 504,
    ErrorKind.WRITE_TIMEOUT: 504,
    ErrorKind.NO_UPSTREAM: 503,
    ErrorKind.OVERLOADED: 503,
    ErrorKind.DOWNSTREAM_GONE: 499,
    ErrorKind.DOWNSTREAM_PROTOCOL: 400,
    ErrorKind.DOWNSTREAM_TIMEOUT: 408,
    ErrorKind.BODY_TOO_LARGE: 413,
    ErrorKind.INTERNAL: 500,
}

_ALWAYS_RETRY = frozenset({ErrorKind.CONNECT_REFUSED, ErrorKind.CONNECT_TIMEOUT})


class ProxyError(Exception):
    """A failure while proxying one request.

    ``retry`` says whether another attempt (possibly at another peer) may succeed without the
    client noticing; it defaults to True for connect failures, which never reached the upstream.
    """

    def __init__(
        self,
        kind: ErrorKind,
        source: ErrorSource,
        message: str,
        *,
        retry: bool | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.source = source
        self.message = message
        self.retry = kind in _ALWAYS_RETRY if retry is None else retry
        self.status = kind.status if status is None else status

    @classmethod
    def upstream(cls, kind: ErrorKind, message: str, *, retry: bool | None = None) -> ProxyError:
        """An upstream-side failure."""
        return cls(kind, ErrorSource.UPSTREAM, message, retry=retry)

    @classmethod
    def downstream(cls, kind: ErrorKind, message: str) -> ProxyError:
        """A client-side failure: never retried."""
        return cls(kind, ErrorSource.DOWNSTREAM, message, retry=False)

    def __str__(self) -> str:
        return f"{self.source.value} {self.kind.value}: {self.message}"
