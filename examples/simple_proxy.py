"""The smallest reverse proxy: every request goes to one origin.

python examples/simple_proxy.py 127.0.0.1:8443 http://127.0.0.1:8080
curl -k https://127.0.0.1:8443/
"""

from __future__ import annotations

import sys

from quicproxy import HttpPeer, ProxyHttp, RequestHeader, Session
from quicproxy.config import parse_upstream_url
from quicproxy.server import serve_proxy


class SimpleProxy(ProxyHttp[None]):
    """Routes everything to one HttpPeer and tags the request on its way."""

    def __init__(self, origin_url: str) -> None:
        host, port, tls = parse_upstream_url(origin_url)
        self.peer = HttpPeer(host, port, tls=tls)

    async def upstream_peer(self, session: Session, ctx: None) -> HttpPeer:
        return self.peer

    async def upstream_request_filter(
        self, session: Session, request: RequestHeader, ctx: None
    ) -> None:
        request.set("x-simple-proxy", "1")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: simple_proxy.py LISTEN_HOST:PORT ORIGIN_URL")
    listen, origin = sys.argv[1], sys.argv[2]
    sys.exit(serve_proxy(lambda: SimpleProxy(origin), [listen]))
