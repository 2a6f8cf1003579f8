"""The built-in, config-driven ProxyHttp: host and path routes, header rules, load balancing,
static files."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.messages import Headers

from .config import Config, HeaderRules, RouteConfig, UpstreamConfig
from .grpcweb import GrpcWebCall, grpc_web_call, trailer_frame
from .hooks import ProxyHttp
from .http import HeaderMap, RequestHeader, ResponseHeader
from .lb.balancer import LoadBalancer
from .lb.selection import selector_by_name
from .retry import RetryPolicy
from .session import Session
from .static import StaticFiles
from .upstream.connector import Connector
from .upstream.peer import HttpPeer, Timeouts

__all__ = ["BuiltinProxy", "RouteCtx"]


@dataclass(slots=True)
class RouteCtx:
    """Per-request state: the matched route."""

    route: RouteConfig | None = None
    grpc_web: GrpcWebCall | None = None  # a gRPC-Web call translated to gRPC


def _peers(upstream: UpstreamConfig) -> list[HttpPeer]:
    timeouts = Timeouts(
        connect=upstream.connect_timeout,
        tls_handshake=upstream.tls_handshake_timeout,
        read=upstream.read_timeout,
        write=upstream.write_timeout,
        idle=upstream.idle_timeout,
        total=upstream.total_timeout,
    )
    return [
        HttpPeer(
            host=host,
            port=port,
            tls=upstream.tls,
            protocol=upstream.protocol,
            sni=upstream.sni,
            verify=upstream.verify,
            ca_file=upstream.ca_file,
            client_cert=upstream.client_cert,
            client_key=upstream.client_key,
            timeouts=timeouts,
            max_connections=upstream.max_connections,
            max_requests=upstream.max_requests,
            max_idle=upstream.max_idle,
        )
        for host, port in upstream.addresses
    ]


def _balancer(upstream: UpstreamConfig, connector: Connector | None) -> LoadBalancer:
    return LoadBalancer(
        upstream.name,
        _peers(upstream),
        selector_by_name(upstream.lb),
        hash_key=upstream.hash_key,
        active=upstream.health_check,
        passive=upstream.passive_health,
        weights=upstream.weights or None,
        resolve_interval=upstream.resolve_interval,
        connector=connector,  # health checks dial like the pool (and share its QUIC tickets)
    )


def _apply_rules(headers: HeaderMap, rules: HeaderRules) -> None:
    for name in rules.remove:
        headers.remove(name)
    for name, value in rules.set:
        headers.set(name, value)


class BuiltinProxy(ProxyHttp[RouteCtx]):
    """Routes each request to the upstream group of the most specific matching route."""

    def __init__(self, config: Config, connector: Connector | None = None) -> None:
        self.routes = sorted(config.routes, key=lambda r: (r.host is None, -len(r.path_prefix)))
        self.static = {r.static: StaticFiles(r.static) for r in config.routes if r.static}
        self.balancers = {u.name: _balancer(u, connector) for u in config.upstreams}
        self.retry_policies = {
            u.name: RetryPolicy(max_retries=u.max_retries, try_duration=u.try_duration)
            for u in config.upstreams
        }

    async def startup(self) -> None:
        for balancer in self.balancers.values():
            balancer.start()

    async def shutdown(self) -> None:
        for balancer in self.balancers.values():
            await balancer.stop()

    def new_ctx(self) -> RouteCtx:
        return RouteCtx()

    def match(self, request: RequestHeader) -> RouteConfig | None:
        """The first route whose host (if any) and path prefix match."""
        host = request.host.lower()
        path = request.path_only
        for route in self.routes:
            if route.host is not None and route.host != host:
                continue
            if path.startswith(route.path_prefix):
                return route
        return None

    async def request_filter(self, session: Session, ctx: RouteCtx) -> bool:
        ctx.route = self.match(session.request)
        if ctx.route is None:
            await session.respond(404, "404 Not Found: no route for this host and path\n")
            return True
        ctx.grpc_web = grpc_web_call(session.request)
        if ctx.route.static is not None:
            path = session.request.path_only.removeprefix(ctx.route.path_prefix.rstrip("/"))
            await self.static[ctx.route.static].serve(session, path)
            return True
        return False

    async def retry_policy(self, session: Session, ctx: RouteCtx) -> RetryPolicy:
        assert ctx.route is not None
        return self.retry_policies[ctx.route.upstream]

    async def upstream_peer(self, session: Session, ctx: RouteCtx) -> HttpPeer:
        assert ctx.route is not None
        return self.balancers[ctx.route.upstream].pick(session)

    async def upstream_request_filter(
        self, session: Session, request: RequestHeader, ctx: RouteCtx
    ) -> None:
        if ctx.grpc_web is not None:
            ctx.grpc_web.upstream_request(request)
        if ctx.route is not None:
            _apply_rules(request, ctx.route.request_headers)

    async def request_body_filter(
        self, session: Session, chunk: bytes, end_of_stream: bool, ctx: RouteCtx
    ) -> bytes:
        if ctx.grpc_web is None:
            return chunk
        return ctx.grpc_web.request_chunk(chunk, end_of_stream)

    async def response_filter(
        self, session: Session, response: ResponseHeader, ctx: RouteCtx
    ) -> None:
        if ctx.grpc_web is not None:
            ctx.grpc_web.client_response(response)
        if ctx.route is not None:
            _apply_rules(response, ctx.route.response_headers)

    async def response_body_filter(
        self, session: Session, chunk: bytes, end_of_stream: bool, ctx: RouteCtx
    ) -> bytes:
        return chunk if ctx.grpc_web is None else ctx.grpc_web.response_chunk(chunk)

    async def response_trailer_filter(
        self, session: Session, trailers: Headers, ctx: RouteCtx
    ) -> Headers:
        if ctx.grpc_web is None:
            return trailers
        # the browser reads the status from the body: the trailers become its last frame
        await session.write_body(ctx.grpc_web.response_chunk(trailer_frame(trailers)))
        return []
