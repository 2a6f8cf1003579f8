"""The interop runner's client role: download REQUESTS over QUIC, per the endpoint contract.

    ROLE=client TESTCASE=transfer REQUESTS="https://server4:443/a https://server4:443/b" \\
        DOWNLOADS=/downloads interop/run_endpoint.sh

Environment (defaults in brackets): TESTCASE; REQUESTS (space-separated https URLs, all on one
server; the port defaults to 443); DOWNLOADS [/downloads] (each body is saved under the last
component of its URL path); SSLKEYLOGFILE (TLS secrets appended in NSS key log format); QLOGDIR
(one qlog per connection); CLIENT_TIMEOUT [60] (seconds for the whole run). Not part of the
runner's contract: CLIENT_ALPN overrides the test case's ALPN (e.g. ``h3`` to run resumption
against an HTTP/3-only server). Certificates are not verified.

Exit status: 0 when every file arrived whole (status 200 over h3), 1 on failure (a one-line
reason on stderr), 127 for a test case this client does not support. One line per connection on
stderr gives the QUIC version, ALPN, cipher suite, whether TLS resumed and whether early data was
accepted.

Test cases (ALPN hq-interop unless noted; all requests on one connection, as many at once as
the server's stream limit allows):

- handshake, transfer, multiplexing, longrtt, blackhole, transferloss, transfercorruption,
  amplificationlimit, rebind-port, rebind-addr, ipv6, connectionmigration, goodput,
  crosstraffic, retry: download everything (aioquic follows a Retry and migrates to a
  server's preferred address by itself).
- http3: the same over h3.
- multiconnect: a new connection per request, one after another.
- chacha20: only TLS_CHACHA20_POLY1305_SHA256 is offered.
- resumption: the first connection fetches the first file and waits for a session ticket; a
  second connection resumes with it and fetches the rest.
- zerortt: like resumption, but the second connection sends its requests as 0-RTT data.
- keyupdate: the client initiates a key update as soon as the handshake is confirmed.
- v2: the first Initial is QUIC v1 offering v2; the server switches to v2 by compatible
  version negotiation.
- ecn: like transfer, with every packet marked ECT(0) and ACK_ECN frames reporting the
  server's marks.
- anything else: 127.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import posixpath
import ssl
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.logger import QuicFileLogger
from aioquic.quic.packet import QuicProtocolVersion
from aioquic.tls import CipherSuite, SessionTicket

from .client_session import ClientConnection, ClientError, Download

__all__ = ["CASES", "Plan", "run"]

UNSUPPORTED = 127
HANDSHAKE_TIMEOUT = 60.0  # tolerates several doubling PTOs under loss, blackholes and long RTTs
TICKET_TIMEOUT = 10.0
MAX_DATAGRAM_SIZE = 1350


@dataclass(frozen=True)
class Plan:
    """How a test case uses connections. ``connections``: one, each (one per request) or
    resume (the first request, then the rest on a resumed connection)."""

    alpn: str = "hq-interop"
    connections: str = "one"
    early_data: bool = False
    key_update: bool = False
    chacha20: bool = False
    v2: bool = False
    ecn: bool = False


_TRANSFER_NAMES = (
    "handshake",
    "transfer",
    "multiplexing",
    "longrtt",
    "blackhole",
    "transferloss",
    "transfercorruption",
    "amplificationlimit",
    "rebind-port",
    "rebind-addr",
    "ipv6",
    "connectionmigration",
    "goodput",
    "crosstraffic",
    "retry",
)

CASES: dict[str, Plan] = {
    **{name: Plan() for name in _TRANSFER_NAMES},
    "http3": Plan(alpn="h3"),
    "multiconnect": Plan(connections="each"),
    "chacha20": Plan(chacha20=True),
    "resumption": Plan(connections="resume"),
    "zerortt": Plan(connections="resume", early_data=True),
    "keyupdate": Plan(key_update=True),
    "v2": Plan(v2=True),
    "ecn": Plan(ecn=True),
}

VERSION_NAMES: dict[int, str] = {
    QuicProtocolVersion.VERSION_1: "v1",
    QuicProtocolVersion.VERSION_2: "v2",
}


@dataclass
class Target:
    """The server and the files to fetch from it."""

    host: str
    port: int
    authority: str
    downloads: list[Download]


def parse_requests(requests: str, directory: Path) -> Target:
    """Split REQUESTS into one server and its downloads (targets under ``directory``)."""
    urls = requests.split()
    if not urls:
        raise ClientError("REQUESTS is empty")
    servers: set[tuple[str, int]] = set()
    downloads: list[Download] = []
    for url in urls:
        parts = urlsplit(url)
        try:
            port = parts.port or 443
        except ValueError:
            raise ClientError(f"bad port in {url}") from None
        if parts.scheme != "https" or not parts.hostname:
            raise ClientError(f"not an https URL: {url}")
        servers.add((parts.hostname, port))
        path = parts.path or "/"
        name = posixpath.basename(path) or "index.html"
        query = f"?{parts.query}" if parts.query else ""
        downloads.append(Download(path + query, directory / name))
    if len(servers) > 1:
        raise ClientError("REQUESTS name more than one server")
    host, port = servers.pop()
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Target(host, port, authority, downloads)


@dataclass
class Settings:
    """Everything a connection of this run is configured from."""

    plan: Plan
    alpn: str
    target: Target
    keylog: TextIO | None = None
    qlog: QuicFileLogger | None = None


def _server_name(host: str) -> str | None:
    """SNI carries names only, never address literals."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def configuration(settings: Settings, ticket: SessionTicket | None) -> QuicConfiguration:
    """The QUIC/TLS configuration for one connection."""
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=[settings.alpn],
        verify_mode=ssl.CERT_NONE,
        server_name=_server_name(settings.target.host),
        max_datagram_size=MAX_DATAGRAM_SIZE,
        session_ticket=ticket,
        secrets_log_file=settings.keylog,
        quic_logger=settings.qlog,
    )
    if settings.plan.chacha20:
        config.cipher_suites = [CipherSuite.CHACHA20_POLY1305_SHA256]
    if settings.plan.v2:
        config.original_version = QuicProtocolVersion.VERSION_1
        config.supported_versions = [QuicProtocolVersion.VERSION_2, QuicProtocolVersion.VERSION_1]
    return config


def _report(number: int, conn: ClientConnection, downloads: list[Download]) -> None:
    version = conn.version()
    name = VERSION_NAMES.get(version or 0, "?")
    early = bool(conn.handshake and conn.handshake.early_data_accepted)
    alpn = conn.handshake.alpn_protocol if conn.handshake else None
    size = sum(download.received for download in downloads)
    peer = conn.quic.get_peer_address()
    moved = f", migrated to {peer[0]} port {peer[1]}" if peer and peer != conn.addr else ""
    print(
        f"interop client: connection {number}: QUIC {name} ({version or 0:#x}), ALPN {alpn}, "
        f"{conn.cipher()}, "
        f"resumed {'yes' if conn.resumed() else 'no'}, "
        f"early data accepted {'yes' if early else 'no'}, "
        f"{len(downloads)} files, {size} bytes{moved}",
        file=sys.stderr,
    )


async def one_connection(
    settings: Settings,
    number: int,
    downloads: list[Download],
    *,
    ticket: SessionTicket | None = None,
    want_ticket: bool = False,
) -> SessionTicket | None:
    """Fetch ``downloads`` on a new connection, close it; return its session ticket."""
    target = settings.target
    config = configuration(settings, ticket)
    conn = await ClientConnection.open(
        config, target.host, target.port, target.authority, ecn=settings.plan.ecn
    )
    try:
        if settings.plan.key_update:
            conn.on_handshake = conn.quic.request_key_update  # applied once confirmed
        if not (settings.plan.early_data and ticket is not None):
            await conn.wait_until(conn.handshake_done, HANDSHAKE_TIMEOUT, "handshake")
        await conn.fetch(downloads)  # 0-RTT: requests go out before the handshake completes
        await conn.wait_until(conn.handshake_done, HANDSHAKE_TIMEOUT, "handshake")
        if want_ticket:
            await conn.wait_until(conn.has_ticket, TICKET_TIMEOUT, "waiting for a session ticket")
        _report(number, conn, downloads)
    finally:
        await conn.close()
    return conn.ticket


async def fetch_all(settings: Settings) -> None:
    """Run the test case's connections."""
    downloads = settings.target.downloads
    mode = settings.plan.connections
    if mode == "each":
        for number, download in enumerate(downloads, 1):
            await one_connection(settings, number, [download])
    elif mode == "resume":
        ticket = await one_connection(settings, 1, downloads[:1], want_ticket=True)
        if ticket is not None and not settings.plan.early_data:
            ticket = dataclasses.replace(ticket, max_early_data_size=None)  # resume, no 0-RTT
        await one_connection(settings, 2, downloads[1:], ticket=ticket)
    else:
        await one_connection(settings, 1, downloads)


async def _main(settings: Settings, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await fetch_all(settings)
    except TimeoutError:
        downloads = settings.target.downloads
        done = sum(1 for download in downloads if download.done and not download.error)
        raise ClientError(
            f"timed out after {seconds:g}s with {done} of {len(downloads)} files complete"
        ) from None


@contextlib.contextmanager
def _keylog(path: str | None) -> Iterator[TextIO | None]:
    """The SSLKEYLOGFILE, opened for appending (line-buffered), or None."""
    if not path:
        yield None
        return
    with open(path, "a", buffering=1) as file:
        yield file


def _settings(env: Mapping[str, str], plan: Plan, keylog: TextIO | None) -> Settings:
    directory = Path(env.get("DOWNLOADS", "/downloads"))
    target = parse_requests(env.get("REQUESTS", ""), directory)
    settings = Settings(plan, env.get("CLIENT_ALPN") or plan.alpn, target, keylog)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if env.get("QLOGDIR"):
            Path(env["QLOGDIR"]).mkdir(parents=True, exist_ok=True)
            settings.qlog = QuicFileLogger(env["QLOGDIR"])
    except OSError as exc:
        raise ClientError(str(exc)) from None
    return settings


def run(env: Mapping[str, str]) -> int:
    """The client role's entry point; returns the exit status."""
    testcase = env.get("TESTCASE", "")
    plan = CASES.get(testcase)
    if plan is None:
        print(f"interop client: unsupported test case {testcase!r}", file=sys.stderr)
        return UNSUPPORTED
    try:
        timeout = float(env.get("CLIENT_TIMEOUT", "60"))
    except ValueError:
        print("interop client: CLIENT_TIMEOUT is not a number", file=sys.stderr)
        return 1
    try:
        with _keylog(env.get("SSLKEYLOGFILE")) as keylog:
            asyncio.run(_main(_settings(env, plan, keylog), timeout))
    except (ClientError, OSError) as exc:
        print(f"interop client: {exc}", file=sys.stderr)
        return 1
    return 0
