"""The interop runner's server role: serve WWW over hq-interop and h3, per the endpoint contract.

    ROLE=server TESTCASE=transfer python3 -m interop.endpoint

Environment (defaults in brackets): TESTCASE, HOST [::], PORT [443], WWW [/www], CERTS [/certs,
holding cert.pem and priv.key], SSLKEYLOGFILE, QLOGDIR. Exit status 127 for a test case this
endpoint does not support.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
from pathlib import Path

from quicproxy.config import Config, ListenConfig, TlsConfig
from quicproxy.config_quic import QuicConfig
from quicproxy.server import ProxyServer, announce, configure_logging, serve
from quicproxy.static import StaticFiles

UNSUPPORTED = 127

# The test names the runner sends to a server (several cases share "transfer", so the server must
# be robust without knowing which network conditions it is under).
SERVER_CASES = frozenset(
    {
        "handshake",
        "transfer",
        "chacha20",
        "retry",
        "resumption",
        "zerortt",
        "http3",
        "multiconnect",
        "keyupdate",
        "v2",
        "connectionmigration",
        "goodput",
        "crosstraffic",
        "ecn",
    }
)
PREFERRED_PORT_OFFSET = 1  # connectionmigration: the preferred address is PORT + 1


def _listen(host: str, port: int) -> tuple[ListenConfig, ...]:
    """``::`` means both families: IPv6 sockets here are v6-only."""
    if host == "::":
        return (ListenConfig("0.0.0.0", port), ListenConfig("::", port))
    return (ListenConfig(host, port),)


def _preferred(host: str, port: int) -> tuple[tuple[str, int], ...]:
    """The addresses offered for migration: this host's addresses on the next port."""
    if host not in ("::", "0.0.0.0"):
        return ((host, port + PREFERRED_PORT_OFFSET),)
    found: dict[int, str] = {}
    with contextlib.suppress(OSError):
        for family, *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None):
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if not address.is_loopback and family not in found:
                found[family] = str(address)
    return tuple((address, port + PREFERRED_PORT_OFFSET) for address in found.values())


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
    host, port = env.get("HOST", "::"), int(env.get("PORT", "443"))
    options = QuicConfig(
        retry="always" if testcase == "retry" else "off",
        ecn=testcase == "ecn",
        preferred_address=_preferred(host, port) if testcase == "connectionmigration" else (),
        keylog_file=Path(keylog) if keylog else None,
        qlog_dir=Path(qlog) if qlog else None,
    )
    config = Config(
        listen=_listen(host, port),
        upstreams=(),
        routes=(),
        tls=TlsConfig(certs / "cert.pem", certs / "priv.key"),
    )
    configure_logging("warning", access_log=False)

    async def make_server(reuse_port: bool) -> ProxyServer:
        return ProxyServer(config, StaticFiles(www), quic_options=options)

    return serve(make_server, workers=1, grace=1.0, ready=announce)


def main(argv: list[str] | None = None) -> int:
    """Dispatch on the first argument (``argv``, else the command line's), or on ROLE."""
    env = dict(os.environ)
    args = sys.argv[1:] if argv is None else argv
    role = args[0] if args else env.get("ROLE", "")
    if role == "server":
        return server(env)
    if role == "client":
        from interop import client  # the client role needs none of the server's imports

        return client.run(env)
    print(f"interop endpoint: role {role!r} is not supported yet", file=sys.stderr)
    return UNSUPPORTED


if __name__ == "__main__":
    sys.exit(main())
