"""Hello world: a ProxyHttp that answers every request itself, over HTTP/3, HTTP/2 and HTTP/1.1.

python examples/hello_server.py 127.0.0.1:8443
curl -k https://127.0.0.1:8443/           # or curl --http3 -k ...
"""

from __future__ import annotations

import sys

from quicproxy import HttpPeer, ProxyError, ProxyHttp, Session
from quicproxy.errors import ErrorKind
from quicproxy.server import serve_proxy


class Hello(ProxyHttp[None]):
    """Answers in request_filter, so no upstream is ever chosen."""

    async def request_filter(self, session: Session, ctx: None) -> bool:
        protocol = session.downstream.protocol
        await session.respond(200, f"Hello, world! You came over {protocol}.\n")
        return True

    async def upstream_peer(self, session: Session, ctx: None) -> HttpPeer:
        raise ProxyError.upstream(ErrorKind.NO_UPSTREAM, "hello_server has no upstream")


if __name__ == "__main__":
    sys.exit(serve_proxy(Hello, sys.argv[1:] or ["127.0.0.1:8443"]))
