"""Custom hooks: answer some requests at the edge, guard others, tag and log the rest.

    python examples/custom_hooks.py 127.0.0.1:8443 http://127.0.0.1:8080
    curl -k https://127.0.0.1:8443/healthz                   # answered by the proxy
    curl -k https://127.0.0.1:8443/private/x                 # 401 without the token
    curl -k -H 'authorization: Bearer let-me-in' https://127.0.0.1:8443/private/x

The same hooks run for HTTP/1.1, HTTP/2 and HTTP/3 clients. Each request gets an id that the
origin sees (``x-request-id``) and the client gets back; failures are answered as JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field

from quicproxy import HttpPeer, ProxyError, ProxyHttp, RequestHeader, ResponseHeader, Session
from quicproxy.config import parse_upstream_url
from quicproxy.server import serve_proxy

log = logging.getLogger("custom_hooks")

TOKEN = "Bearer let-me-in"


@dataclass
class Ctx:
    """What one request carries from phase to phase."""

    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started: float = field(default_factory=time.monotonic)
    body_bytes: int = 0


class EdgeHooks(ProxyHttp[Ctx]):
    """A health endpoint, a token-guarded prefix, request ids and a JSON error page."""

    def __init__(self, origin_url: str) -> None:
        host, port, tls = parse_upstream_url(origin_url)
        self.origin = HttpPeer(host, port, tls=tls)

    def new_ctx(self) -> Ctx:
        return Ctx()

    async def request_filter(self, session: Session, ctx: Ctx) -> bool:
        path = session.request.path_only
        if path == "/healthz":
            await session.respond(200, "ok\n", headers=[(b"x-request-id", ctx.request_id.encode())])
            return True
        if path.startswith("/private/") and session.request.get("authorization") != TOKEN:
            headers = [(b"www-authenticate", b'Bearer realm="example"')]
            await session.respond(401, "401 Unauthorized: a token is needed\n", headers=headers)
            return True
        return False

    async def upstream_peer(self, session: Session, ctx: Ctx) -> HttpPeer:
        return self.origin

    async def upstream_request_filter(
        self, session: Session, request: RequestHeader, ctx: Ctx
    ) -> None:
        request.set("x-request-id", ctx.request_id)
        request.remove("authorization")  # the origin trusts the proxy, not the client's token

    async def response_filter(self, session: Session, response: ResponseHeader, ctx: Ctx) -> None:
        response.set("x-request-id", ctx.request_id)
        response.remove("server")

    async def response_body_filter(
        self, session: Session, chunk: bytes, end_of_stream: bool, ctx: Ctx
    ) -> bytes:
        ctx.body_bytes += len(chunk)
        return chunk

    async def fail_to_proxy(self, session: Session, error: ProxyError, ctx: Ctx) -> int:
        body = json.dumps({"error": error.kind.value, "request_id": ctx.request_id}) + "\n"
        await session.respond(error.status, body, content_type="application/json")
        return error.status

    async def logging(self, session: Session, error: ProxyError | None, ctx: Ctx) -> None:
        elapsed_ms = (time.monotonic() - ctx.started) * 1e3
        log.warning(
            "request %s %s %s over %s: %s, %d body bytes, %.1f ms%s",
            ctx.request_id,
            session.request.method,
            session.request.path,
            session.downstream.protocol,
            session.response_status,
            ctx.body_bytes,
            elapsed_ms,
            f" ({error.kind.value})" if error else "",
        )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: custom_hooks.py LISTEN_HOST:PORT ORIGIN_URL")
    listen, origin = sys.argv[1], sys.argv[2]
    sys.exit(serve_proxy(lambda: EdgeHooks(origin), [listen]))
