"""Hello world: a ProxyHttp that answers every request itself, over HTTP/3, HTTP/2 and HTTP/1.1.

python examples/hello_server.py 127.0.0.1:8443
curl -k https://127.0.0.1:8443/           # or curl --http3 -k ...
"""

from __future__ import annotations

import sys

from quicproxy import ProxyHttp, Session
from quicproxy.server import serve_proxy


class Hello(ProxyHttp[None]):
    """Answers in request_filter, so no upstream is ever chosen (no upstream_peer needed)."""

    async def request_filter(self, session: Session, ctx: None) -> bool:
        protocol = session.downstream.protocol
        await session.respond(200, f"Hello, world! You came over {protocol}.\n")
        return True


if __name__ == "__main__":
    sys.exit(serve_proxy(Hello, sys.argv[1:] or ["127.0.0.1:8443"]))
