"""Drives one request through the hook phases: upstream choice, both body pumps, retries, errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from protocols.errors import ErrorCode
from protocols.messages import ResponseHead, strip_hop_by_hop

from .accesslog import log_request
from .altsvc import AltSvcPolicy
from .body import BodyChannel
from .config import LimitsConfig
from .errors import ErrorKind, ErrorSource, ProxyError
from .forwarding import ForwardingPolicy
from .grpc import grpc_timeout
from .hooks import ProxyHttp
from .http import RequestHeader, ResponseHeader
from .metrics import record_request
from .request_rules import check_request
from .session import Session
from .streamio import ClientStream
from .upstream.peer import HttpPeer
from .upstream.pool import PooledConnection, UpstreamPool

__all__ = ["ProxyServices", "run"]

log = logging.getLogger("quicproxy.pipeline")

# RFC 8470: 0-RTT requests may be replayed; only these go upstream (marked early-data: 1)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HANDSHAKE_WAIT = 10.0  # seconds an early request waits for the handshake


@dataclass(slots=True)
class ProxyServices:
    """What every request of a server shares."""

    pool: UpstreamPool = field(default_factory=UpstreamPool)
    altsvc: AltSvcPolicy = field(default_factory=lambda: AltSvcPolicy(None))
    forwarding: ForwardingPolicy = field(default_factory=ForwardingPolicy)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    hold_unsafe_early_data: bool = False  # else 425 Too Early (RFC 8470)


async def run(session: Session, proxy: ProxyHttp[Any], services: ProxyServices) -> None:
    """Serve one request to the end; never raises except for cancellation."""
    ctx = proxy.new_ctx()
    error: ProxyError | None = None
    try:
        await _serve(session, proxy, ctx, services)
    except ProxyError as exc:
        error = exc
    except asyncio.CancelledError:
        if not _client_went_away(session):
            raise
        error = session.stream.error or ProxyError.downstream(
            ErrorKind.DOWNSTREAM_GONE, "the client reset the stream"
        )
    except Exception as exc:
        log.exception(
            "hook or pipeline failure on %s %s", session.request.method, session.request.path
        )
        error = ProxyError(ErrorKind.INTERNAL, ErrorSource.INTERNAL, f"{type(exc).__name__}: {exc}")
    try:
        if error is not None:
            session.error = error
            await _fail(session, proxy, error, ctx)
        await proxy.logging(session, error, ctx)
    except ProxyError:
        pass
    except Exception:
        log.exception("failure while failing request %s", session.request.path)
    finally:
        if session.response_finished and not session.stream.body.ended:
            session.stream.stop_receiving()  # answered before the whole upload arrived
        session.stream.close()
        log_request(session, error)
        record_request(session)


def _client_went_away(session: Session) -> bool:
    """True when this task was cancelled because the client reset its stream or left (and by
    nothing else): the request ends as an error, its hooks still run."""
    task = asyncio.current_task()
    if session.stream.error is None or task is None:
        return False
    return task.uncancel() == 0


async def _serve(
    session: Session, proxy: ProxyHttp[Any], ctx: Any, services: ProxyServices
) -> None:
    limits = services.limits
    request = session.request
    services.forwarding.trace(request)  # W3C traceparent: kept when valid, else a new one
    target, refusal = check_request(
        request.method,
        request.path,
        request.get("content-length"),
        normalize=limits.normalize_path,
        max_body=limits.max_body_size,
    )
    if refusal is not None:
        log.info("refused %s %s: %s", request.method, request.path, refusal.reason)
        await session.respond(refusal.status, f"{refusal.status} {refusal.reason}\n")
        return
    request.path = target
    await proxy.early_request_filter(session, ctx)
    if session.downstream.early_data and session.request.method not in SAFE_METHODS:
        if not services.hold_unsafe_early_data:
            await session.respond(425, "425 Too Early: retry after the handshake\n")
            return
        await _wait_for_handshake(session)
    if not await proxy.request_filter(session, ctx):
        await _proxy_with_retries(session, proxy, ctx, services)


async def _wait_for_handshake(session: Session) -> None:
    """Hold a 0-RTT request until the client's handshake completes (it is no replay then)."""
    handshake = session.downstream.handshake
    if handshake is not None:
        try:
            async with asyncio.timeout(HANDSHAKE_WAIT):
                await asyncio.shield(handshake)
        except (TimeoutError, ConnectionError):
            raise ProxyError.downstream(
                ErrorKind.DOWNSTREAM_GONE, "the client's QUIC handshake did not complete"
            ) from None
    session.downstream.early_data = False


async def _fail(session: Session, proxy: ProxyHttp[Any], error: ProxyError, ctx: Any) -> None:
    if error.kind is ErrorKind.DOWNSTREAM_GONE:
        session.abort(ErrorCode.CANCEL)
        return
    if error.source is not ErrorSource.DOWNSTREAM:
        log.warning(
            "%s %s%s failed: %s",
            session.request.method,
            session.request.authority,
            session.request.path,
            error,
        )
    if session.response_started:
        session.abort(ErrorCode.INTERNAL_ERROR)
        return
    try:
        await proxy.fail_to_proxy(session, error, ctx)
    except ProxyError:
        session.abort(ErrorCode.INTERNAL_ERROR)


async def _proxy_with_retries(
    session: Session, proxy: ProxyHttp[Any], ctx: Any, services: ProxyServices
) -> None:
    policy = await proxy.retry_policy(session, ctx)
    started = time.monotonic()
    attempt = 0
    while True:
        peer = await proxy.upstream_peer(session, ctx)
        session.upstream_tries.append(peer.address)
        try:
            await _observed_try(session, proxy, ctx, peer, services)
            return
        except ProxyError as exc:
            if exc.kind is ErrorKind.TOO_EARLY and session.downstream.early_data:
                log.info("425 from upstream: %s again after the handshake", session.request.path)
                await _wait_for_handshake(session)
                continue
            untouched = not session.response_started and session.stream.body.taken == 0
            if not (untouched and policy.should_retry(exc, attempt, time.monotonic() - started)):
                raise
            attempt += 1
            delay = policy.backoff(attempt)
            log.info(
                "retry %d of %s in %.0f ms after: %s",
                attempt,
                session.request.path,
                delay * 1e3,
                exc,
            )
            await asyncio.sleep(delay)


async def _observed_try(
    session: Session, proxy: ProxyHttp[Any], ctx: Any, peer: HttpPeer, services: ProxyServices
) -> None:
    """One try, counted by the peer's observer (a balancer's backend) when it has one: in
    flight while it runs, then its outcome (a failure only when the upstream is to blame)."""
    observer = peer.observer
    if observer is None:
        await _proxy_within_total(session, proxy, ctx, peer, services)
        return
    observer.try_started()
    started = time.monotonic()
    upstream_failed = False
    try:
        await _proxy_within_total(session, proxy, ctx, peer, services)
    except ProxyError as exc:
        upstream_failed = exc.source is ErrorSource.UPSTREAM
        raise
    finally:
        observer.try_finished(not upstream_failed, time.monotonic() - started)


async def _proxy_within_total(
    session: Session, proxy: ProxyHttp[Any], ctx: Any, peer: HttpPeer, services: ProxyServices
) -> None:
    """One try, bounded by the peer's total timeout when it has one, and by what is left of a
    gRPC call's ``grpc-timeout`` (counted from the request's start)."""
    total = peer.timeouts.total or None
    limit = f"its total timeout of {total:g}s" if total else ""
    call = grpc_timeout(session.request) if session.downstream.protocol != "http/1.1" else None
    if call is not None:
        left = max(0.0, call - (time.monotonic() - session.started))
        if total is None or left < total:
            total, limit = left, f"the gRPC deadline of {call:g}s"
    if total is None:
        await _proxy_once(session, proxy, ctx, peer, services)
        return
    try:
        async with asyncio.timeout(total):
            await _proxy_once(session, proxy, ctx, peer, services)
    except TimeoutError:
        raise ProxyError.upstream(
            ErrorKind.READ_TIMEOUT, f"exchange with {peer.address} exceeded {limit}", retry=False
        ) from None


def _upstream_request(
    session: Session, services: ProxyServices, multiplexed: bool
) -> RequestHeader:
    request = RequestHeader.from_head(session.request.to_head())
    wants_trailers = any(
        token.strip().lower() == "trailers"
        for value in request.get_all("te")
        for token in value.split(",")
    )
    request.headers = strip_hop_by_hop(request.headers)
    if wants_trailers and multiplexed:
        request.set("te", "trailers")  # the one TE h2/h3 allow; gRPC servers need it
    services.forwarding.apply(request, session.downstream, session.http_version)
    if session.downstream.early_data:
        request.set("early-data", "1")  # RFC 8470: the origin may answer 425
    return request


async def _proxy_once(
    session: Session,
    proxy: ProxyHttp[Any],
    ctx: Any,
    peer: HttpPeer,
    services: ProxyServices,
) -> None:
    try:
        conn, reused = await services.pool.acquire(peer)
    except ProxyError as exc:
        raise await proxy.fail_to_connect(session, peer, exc, ctx) from None
    session.upstream_address = peer.address
    clean = False
    upstream: ClientStream | None = None
    body_task: asyncio.Task[None] | None = None
    try:
        await proxy.connected_to_upstream(session, peer, reused, ctx)
        request = _upstream_request(session, services, conn.multiplexed)
        await proxy.upstream_request_filter(session, request, ctx)
        upstream = _open_stream(conn, request, not session.request_has_body)
        upstream.informational = _informational_forwarder(session)
        if session.request_has_body:
            body_task = asyncio.create_task(
                _pump_request(session, upstream, proxy, ctx, services.limits)
            )
        try:
            head = await _await_response(upstream, peer, body_task)
        except ProxyError as exc:
            raise _retry_if_stale(exc, reused, session.request.method) from None
        if head.status == 425 and _can_resend_after_handshake(session):
            raise ProxyError.upstream(ErrorKind.TOO_EARLY, f"{peer.address} answered 425")
        await _pump_response(session, upstream, head, proxy, ctx, peer, services)
        if body_task is not None:
            await body_task
        clean = upstream.local_ended and upstream.error is None
    except ProxyError as exc:
        raise await proxy.error_while_proxy(session, peer, exc, ctx, reused) from None
    finally:
        if body_task is not None and not body_task.done():
            body_task.cancel()
        if upstream is not None:
            if not clean:
                upstream.reset()
            upstream.close()
        services.pool.release(conn, clean)


def _can_resend_after_handshake(session: Session) -> bool:
    """RFC 8470 section 5.2: a 425 to a request we sent early is retried once, after the
    handshake; requests with a body are not (it has been consumed)."""
    downstream = session.downstream
    return (
        downstream.early_data and downstream.handshake is not None and not session.request_has_body
    )


def _open_stream(conn: PooledConnection, request: RequestHeader, end_stream: bool) -> ClientStream:
    """Send the request head. When the connection can take no stream after all (it closed, went
    away or filled up while the hooks ran: a local REFUSED_STREAM), nothing reached the upstream
    and the request may go again."""
    try:
        return conn.open_stream(request.to_head(), end_stream=end_stream)
    except ProxyError as exc:
        if exc.source is ErrorSource.UPSTREAM and not conn.reusable:
            exc.retry = True
        raise


async def _await_response(
    upstream: ClientStream, peer: HttpPeer, body_task: asyncio.Task[None] | None
) -> ResponseHead:
    """The response head, within the read timeout counted from the end of the request: while
    the body is still being sent, a slow client is the client body timeout's business and an
    upstream that stops reading the write timeout's."""
    read = peer.timeouts.read
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Future[Any]] = {upstream.response}
    deadline: float | None = loop.time() + read
    if body_task is not None and not body_task.done():
        pending.add(body_task)
        deadline = None
    while not upstream.response.done():
        timeout = None if deadline is None else deadline - loop.time()
        if timeout is not None and timeout <= 0:
            raise ProxyError.upstream(
                ErrorKind.READ_TIMEOUT,
                f"no response from {peer.address} within {read:g}s",
                retry=False,
            )
        done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if body_task is not None and body_task in done:
            pending.discard(body_task)
            deadline = loop.time() + read  # the request is sent: the read timeout starts
    return upstream.response.result()


_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def _retry_if_stale(error: ProxyError, reused: bool, method: str) -> ProxyError:
    """A reused connection may have been closed by the upstream just as we sent: an idempotent
    request may go again."""
    stale = reused and error.kind in (ErrorKind.UPSTREAM_RESET, ErrorKind.UPSTREAM_PROTOCOL)
    if error.source is ErrorSource.UPSTREAM and stale and method in _IDEMPOTENT:
        error.retry = True
    return error


def _informational_forwarder(session: Session) -> Any:
    def forward(head: ResponseHead) -> None:
        if head.status not in (100, 101):
            session.write_informational(head.with_headers(strip_hop_by_hop(head.headers)))

    return forward


async def _forward_body(
    body: BodyChannel,
    idle_timeout: float,
    timeout_error: Callable[[], ProxyError],
    body_filter: Callable[[bytes, bool], Awaitable[bytes]],
    write: Callable[[bytes], Awaitable[None]],
) -> None:
    """Move a body chunk by chunk through a filter; each chunk is credited once written."""
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                chunk = await body.read()
        except TimeoutError:
            raise timeout_error() from None
        if chunk is None:
            break
        out = await body_filter(chunk, False)
        if out:
            await write(out)
        body.release(len(chunk))
    tail = await body_filter(b"", True)
    if tail:
        await write(tail)


async def _pump_request(
    session: Session, upstream: ClientStream, proxy: ProxyHttp[Any], ctx: Any, limits: LimitsConfig
) -> None:
    """Request body: client -> request_body_filter -> upstream, within the client body timeout
    (between chunks) and the request timeout (the whole body, counted from the head)."""
    body = session.stream.body
    idle = limits.client_body_timeout
    deadline = session.started + limits.request_timeout if limits.request_timeout else None
    try:
        try:
            async with asyncio.timeout_at(_loop_deadline(deadline)):
                await _forward_body(
                    body,
                    idle,
                    lambda: ProxyError.downstream(
                        ErrorKind.DOWNSTREAM_TIMEOUT, f"client sent no body for {idle:g}s"
                    ),
                    lambda chunk, end: proxy.request_body_filter(session, chunk, end, ctx),
                    upstream.send_data,
                )
        except TimeoutError:
            raise ProxyError.downstream(
                ErrorKind.DOWNSTREAM_TIMEOUT,
                f"client did not send its request within {limits.request_timeout:g}s",
            ) from None
        if body.trailers:
            upstream.send_trailers(body.trailers)
        else:
            upstream.end()
    except ProxyError as exc:
        upstream.fail(exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        upstream.fail(ProxyError(ErrorKind.INTERNAL, ErrorSource.INTERNAL, repr(exc), retry=False))


def _loop_deadline(deadline: float | None) -> float | None:
    """A time.monotonic() deadline on the event loop's clock (None: no deadline)."""
    if deadline is None:
        return None
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


async def _pump_response(
    session: Session,
    upstream: ClientStream,
    head: ResponseHead,
    proxy: ProxyHttp[Any],
    ctx: Any,
    peer: HttpPeer,
    services: ProxyServices,
) -> None:
    """Response: upstream -> filters -> Alt-Svc -> client."""
    response = ResponseHeader.from_head(head)
    response.headers = strip_hop_by_hop(response.headers)
    services.pool.observe_alt_svc(peer, response.get_all("alt-svc"))
    await proxy.upstream_response_filter(session, response, ctx)
    services.altsvc.apply(response, session.downstream.protocol)
    await proxy.response_filter(session, response, ctx)
    body = upstream.body
    if body.finished and body.trailers is None:
        await session.write_response_head(response, end_stream=True)
        return
    await session.write_response_head(response)
    await _forward_body(
        body,
        peer.timeouts.read,
        lambda: ProxyError.upstream(
            ErrorKind.READ_TIMEOUT,
            f"{peer.address} sent nothing for {peer.timeouts.read:g}s mid-body",
            retry=False,
        ),
        lambda chunk, end: proxy.response_body_filter(session, chunk, end, ctx),
        session.write_body,
    )
    trailers = body.trailers
    if trailers:
        trailers = await proxy.response_trailer_filter(session, trailers, ctx)
    session.finish_response(trailers)
