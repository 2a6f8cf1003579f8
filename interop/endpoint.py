"""The interop runner's server role: serve WWW over hq-interop and h3, per the endpoint contract.

    ROLE=server TESTCASE=transfer python3 -m interop.endpoint

Environment (defaults in brackets): TESTCASE, HOST [::], PORT [443], WWW [/www], CERTS [/certs,
holding cert.pem and priv.key], SSLKEYLOGFILE, QLOGDIR. Exit status 127 for a test case this
endpoint does not support.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from quicproxy.config import Config, ListenConfig, TlsConfig
from quicproxy.frontend.base import QuicOptions
from quicproxy.server import ProxyServer, announce, configure_logging, serve
from quicproxy.static import StaticFiles

UNSUPPORTED = 127

# Test cases the server role passes without knowing more than "serve files". The runner also
# sends TESTCASE=transfer for several network-simulator cases, so unknown setups must be robust.
SERVER_CASES = frozenset(
    {
        "handshake",
        "transfer",
        "longrtt",
        "chacha20",
        "multiplexing",
        "retry",
        "resumption",
        "zerortt",
        "http3",
        "blackhole",
        "keyupdate",
        "ecn",
        "amplificationlimit",
        "handshakeloss",
        "transferloss",
        "handshakecorruption",
        "transfercorruption",
        "ipv6",
        "v2",
        "rebind-port",
        "rebind-addr",
        "connectionmigration",
        "goodput",
        "crosstraffic",
    }
)


def _listen(host: str, port: int) -> tuple[ListenConfig, ...]:
    """``::`` means both families: IPv6 sockets here are v6-only."""
    if host == "::":
        return (ListenConfig("0.0.0.0", port), ListenConfig("::", port))
    return (ListenConfig(host, port),)


def server(env: dict[str, str]) -> int:
    """Run the server role until SIGTERM."""
    testcase = env.get("TESTCASE", "")
    if testcase not in SERVER_CASES:
        print(f"interop endpoint: unsupported test case {testcase!r}", file=sys.stderr)
        return UNSUPPORTED
    certs = Path(env.get("CERTS", "/certs"))
    www = Path(env.get("WWW", "/www"))
    keylog = env.get("SSLKEYLOGFILE")
    qlog = env.get("QLOGDIR")
    options = QuicOptions(
        retry=testcase == "retry",
        keylog_file=Path(keylog) if keylog else None,
        qlog_dir=Path(qlog) if qlog else None,
    )
    config = Config(
        listen=_listen(env.get("HOST", "::"), int(env.get("PORT", "443"))),
        upstreams=(),
        routes=(),
        tls=TlsConfig(certs / "cert.pem", certs / "priv.key"),
    )
    configure_logging("warning", access_log=False)

    async def make_server(reuse_port: bool) -> ProxyServer:
        return ProxyServer(config, StaticFiles(www), quic_options=options)

    return serve(make_server, workers=1, grace=1.0, ready=announce)


def main() -> int:
    """Dispatch on ROLE (or the first argument)."""
    env = dict(os.environ)
    role = sys.argv[1] if len(sys.argv) > 1 else env.get("ROLE", "")
    if role == "server":
        return server(env)
    print(f"interop endpoint: role {role!r} is not supported yet", file=sys.stderr)
    return UNSUPPORTED


if __name__ == "__main__":
    sys.exit(main())
