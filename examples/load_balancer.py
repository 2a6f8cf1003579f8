"""A load balancer in a few lines: three backends, round robin, an active health check.

    python examples/load_balancer.py 127.0.0.1:8443 http://127.0.0.1:8081 http://127.0.0.1:8082 \\
        http://127.0.0.1:8083
    curl -k https://127.0.0.1:8443/

Backends that fail two checks in a row (GET /, every second) are skipped until they pass two;
connect failures move the request to the next backend, so clients do not notice a dead one.
Returning ``balancer.pick(session)`` is all the bookkeeping there is: the pipeline counts each
backend's requests in flight and reports every outcome to the balancer's passive health.
"""

from __future__ import annotations

import sys

from quicproxy import HttpPeer, ProxyHttp, ResponseHeader, Session
from quicproxy.config import ActiveCheck, parse_upstream_url
from quicproxy.lb import LoadBalancer, RoundRobin
from quicproxy.server import serve_proxy


class Balanced(ProxyHttp[None]):
    """Round robin over healthy backends; the balancer's health task runs per worker."""

    def __init__(self, urls: list[str]) -> None:
        peers = []
        for url in urls:
            host, port, tls = parse_upstream_url(url)
            peers.append(HttpPeer(host, port, tls=tls))
        check = ActiveCheck(path="/", interval=1.0, healthy_threshold=2, unhealthy_threshold=2)
        self.balancer = LoadBalancer("backends", peers, RoundRobin(), active=check)

    async def startup(self) -> None:
        self.balancer.start()

    async def shutdown(self) -> None:
        await self.balancer.stop()

    async def upstream_peer(self, session: Session, ctx: None) -> HttpPeer:
        return self.balancer.pick(session)  # a retry skips the backends already tried

    async def response_filter(self, session: Session, response: ResponseHeader, ctx: None) -> None:
        if session.upstream_address is not None:
            response.set("x-served-by", session.upstream_address)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: load_balancer.py LISTEN_HOST:PORT BACKEND_URL [BACKEND_URL ...]")
    listen, urls = sys.argv[1], sys.argv[2:]
    sys.exit(serve_proxy(lambda: Balanced(urls), [listen]))
