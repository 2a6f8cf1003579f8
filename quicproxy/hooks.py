"""ProxyHttp: the request-phase hook class that users subclass; every phase has a default."""

from __future__ import annotations

from abc import ABC
from typing import Generic, TypeVar

from protocols.messages import Headers

from .errors import ErrorKind, ErrorSource, ProxyError
from .http import RequestHeader, ResponseHeader
from .retry import RetryPolicy
from .session import Session
from .upstream.peer import HttpPeer

__all__ = ["ProxyHttp"]

CtxT = TypeVar("CtxT")

DEFAULT_RETRY_POLICY = RetryPolicy()

_REASONS = {
    400: "Bad Request",
    413: "Content Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_CLIENT_TEXT = {
    ErrorKind.CONNECT_REFUSED: "upstream connection refused",
    ErrorKind.CONNECT_TIMEOUT: "upstream connect timed out",
    ErrorKind.TLS_HANDSHAKE: "upstream TLS handshake failed",
    ErrorKind.UPSTREAM_RESET: "upstream closed the connection",
    ErrorKind.UPSTREAM_PROTOCOL: "upstream sent an invalid response",
    ErrorKind.READ_TIMEOUT: "upstream timed out",
    ErrorKind.WRITE_TIMEOUT: "upstream stopped reading",
    ErrorKind.NO_UPSTREAM: "no upstream available",
    ErrorKind.OVERLOADED: "upstream at its connection or request limit",
}


class ProxyHttp(ABC, Generic[CtxT]):
    """Phases a request goes through, in order (see README's phase chart).

    Every method has a default; a proxy overrides ``upstream_peer`` to forward anything (a hook
    that answers every request itself in ``request_filter`` needs nothing else). ``ctx`` is the
    per-request state returned by ``new_ctx``; it is passed to every phase of that request.
    """

    async def startup(self) -> None:
        """Once per worker, before listening: start background work (health checks...)."""

    async def shutdown(self) -> None:
        """Once per worker, after draining: stop background work."""

    def new_ctx(self) -> CtxT:
        """Per-request state; the default is None."""
        return None  # type: ignore[return-value]

    async def early_request_filter(self, session: Session, ctx: CtxT) -> None:
        """First look at the request, before anything else runs."""

    async def request_filter(self, session: Session, ctx: CtxT) -> bool:
        """Return True after answering the request yourself (``session.respond``)."""
        return False

    async def upstream_peer(self, session: Session, ctx: CtxT) -> HttpPeer:
        """Where this request goes. Called again for each retry (``session.upstream_tries``
        lists the addresses tried so far). Return ``LoadBalancer.pick(session)`` to balance:
        the pipeline then counts in-flight requests and reports outcomes to the balancer. The
        default has nowhere to send: a 500 and a log line naming the class."""
        raise ProxyError(
            ErrorKind.INTERNAL,
            ErrorSource.INTERNAL,
            f"{type(self).__name__} defines no upstream_peer for {session.request.path}",
            retry=False,
        )

    async def retry_policy(self, session: Session, ctx: CtxT) -> RetryPolicy:
        """How this request is retried after retryable upstream failures."""
        return DEFAULT_RETRY_POLICY

    async def fail_to_connect(
        self, session: Session, peer: HttpPeer, error: ProxyError, ctx: CtxT
    ) -> ProxyError:
        """Connecting to ``peer`` failed; set ``error.retry`` to decide whether to try again."""
        return error

    async def error_while_proxy(
        self, session: Session, peer: HttpPeer, error: ProxyError, ctx: CtxT, reused: bool
    ) -> ProxyError:
        """An exchange with ``peer`` failed after connecting; ``error.retry`` decides again."""
        return error

    async def connected_to_upstream(
        self, session: Session, peer: HttpPeer, reused: bool, ctx: CtxT
    ) -> None:
        """A connection to ``peer`` is ready; ``reused``: it served earlier requests."""

    async def upstream_request_filter(
        self, session: Session, request: RequestHeader, ctx: CtxT
    ) -> None:
        """Change the request about to go upstream (forwarding headers are already set)."""

    async def request_body_filter(
        self, session: Session, chunk: bytes, end_of_stream: bool, ctx: CtxT
    ) -> bytes:
        """Change a request body chunk on its way upstream."""
        return chunk

    async def upstream_response_filter(
        self, session: Session, response: ResponseHeader, ctx: CtxT
    ) -> None:
        """Change the upstream's response head (before Alt-Svc and ``response_filter``)."""

    async def response_filter(self, session: Session, response: ResponseHeader, ctx: CtxT) -> None:
        """Change the response head about to go to the client."""

    async def response_body_filter(
        self, session: Session, chunk: bytes, end_of_stream: bool, ctx: CtxT
    ) -> bytes:
        """Change a response body chunk on its way to the client."""
        return chunk

    async def response_trailer_filter(
        self, session: Session, trailers: Headers, ctx: CtxT
    ) -> Headers:
        """Change the response trailers on their way to the client."""
        return trailers

    async def fail_to_proxy(self, session: Session, error: ProxyError, ctx: CtxT) -> int:
        """Answer a request that could not be proxied; return the status sent."""
        status = error.status
        reason = _REASONS.get(status, "Error")
        detail = _CLIENT_TEXT.get(error.kind)
        text = f"{status} {reason}: {detail}\n" if detail else f"{status} {reason}\n"
        headers: Headers = [(b"cache-control", b"no-store")]
        if status == 503:
            headers.append((b"retry-after", b"1"))
        await session.respond(status, text, headers=headers)
        return status

    async def logging(self, session: Session, error: ProxyError | None, ctx: CtxT) -> None:
        """The request is over (``error`` says why, if it failed)."""
