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
    """What failed; the value is the status a client sees when nothing was sent to it yet."""

    CONNECT_REFUSED = 502
    CONNECT_TIMEOUT = 504
    TLS_HANDSHAKE = 502
    UPSTREAM_RESET = 502
    UPSTREAM_PROTOCOL = 502
    READ_TIMEOUT = 504
    WRITE_TIMEOUT = 504
    NO_UPSTREAM = 503
    DOWNSTREAM_GONE = 499
    DOWNSTREAM_PROTOCOL = 400
    BODY_TOO_LARGE = 413
    INTERNAL = 500


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
        self.status = kind.value if status is None else status

    @classmethod
    def upstream(cls, kind: ErrorKind, message: str, *, retry: bool | None = None) -> ProxyError:
        """An upstream-side failure."""
        return cls(kind, ErrorSource.UPSTREAM, message, retry=retry)

    @classmethod
    def downstream(cls, kind: ErrorKind, message: str) -> ProxyError:
        """A client-side failure: never retried."""
        return cls(kind, ErrorSource.DOWNSTREAM, message, retry=False)

    def __str__(self) -> str:
        return f"{self.source.value} {self.kind.name.lower()}: {self.message}"
