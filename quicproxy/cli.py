"""The ``quicproxy`` command: demo, reverse-proxy, file-server, run, reload, check, certs."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from protocols.engines.base import EngineCompatError

from . import pidfile
from .accesslog import configure_access_log
from .admin import AdminPlan
from .config import (
    Config,
    ConfigError,
    ListenConfig,
    RouteConfig,
    TlsConfig,
    UpstreamConfig,
    load_config,
    parse_address,
    parse_upstream_url,
)
from .devcerts import default_cert_dir, ensure_dev_certs, trust_instructions
from .net.certs import CertificateError
from .reload import ConfigSource, load_certificates
from .server import (
    ProxyServer,
    announce,
    certificate_paths,
    configure_logging,
    quic_addresses,
    serve,
)

__all__ = ["main"]


def _listen_on(host: str, port: int, quic: bool = True) -> tuple[ListenConfig, ...]:
    """``localhost`` means both loopbacks; an empty host means every address."""
    if host in ("localhost", ""):
        v4, v6 = ("127.0.0.1", "::1") if host else ("0.0.0.0", "::")
        return (ListenConfig(v4, port, True, quic), ListenConfig(v6, port, True, quic))
    return (ListenConfig(host, port, True, quic),)


def _workers(value: str) -> int:
    import os

    if value == "auto":
        return os.cpu_count() or 1
    number = int(value)
    if not 1 <= number <= 256:
        raise argparse.ArgumentTypeError("workers must be from 1 to 256, or auto")
    return number


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo.origin import DemoOrigin

    configure_logging(args.log_level)
    cert_dir = Path(args.cert_dir) if args.cert_dir else default_cert_dir()
    certs = ensure_dev_certs(cert_dir)
    listen = _listen_on(args.host, args.port)

    async def make_server(reuse_port: bool) -> ProxyServer:
        origin = DemoOrigin()
        await origin.start()
        config = Config(
            listen=listen,
            upstreams=(UpstreamConfig("demo", (("127.0.0.1", origin.port),)),),
            routes=(RouteConfig("demo"),),
            tls=TlsConfig(certs.cert, certs.key),
        )
        return ProxyServer(config, reuse_port=reuse_port)

    print(trust_instructions(certs, args.port), flush=True)
    steered = quic_addresses(Config(listen=listen, upstreams=(), routes=()))
    return serve(
        make_server, workers=args.workers, grace=2.0, ready=announce, quic_addresses=steered
    )


def _site_tls(args: argparse.Namespace) -> TlsConfig:
    """``--cert``/``--key`` (ValueError when only one is given), else the dev certificate."""
    if (args.cert is None) != (args.key is None):
        raise ValueError("--cert and --key go together")
    chosen = TlsConfig(Path(args.cert), Path(args.key)) if args.cert else TlsConfig()
    return TlsConfig(*certificate_paths(chosen))


def _serve_config(config: Config, workers: int) -> int:
    """Serve a config built from the command line (no file: SIGHUP re-reads certificates)."""

    async def make_server(reuse_port: bool) -> ProxyServer:
        return ProxyServer(config, reuse_port=reuse_port)

    return serve(
        make_server,
        workers=workers,
        grace=10.0,
        ready=announce,
        quic_addresses=quic_addresses(config),
    )


def _cmd_reverse_proxy(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        host, port = parse_address(args.from_address, default_host="")
        addresses = []
        schemes = set()
        for url in args.to:
            up_host, up_port, up_tls = parse_upstream_url(url)
            addresses.append((up_host, up_port))
            schemes.add(up_tls)
        if len(schemes) > 1:
            raise ValueError("--to URLs mix http:// and https://")
        tls = _site_tls(args)
    except ValueError as exc:
        print(f"quicproxy reverse-proxy: {exc}", file=sys.stderr)
        return 2
    config = Config(
        listen=_listen_on(host, port),
        upstreams=(
            UpstreamConfig("to", tuple(addresses), tls=schemes.pop(), verify=not args.insecure),
        ),
        routes=(RouteConfig("to"),),
        tls=tls,
    )
    return _serve_config(config, args.workers or (1 if port == 0 else _workers("auto")))


def _cmd_file_server(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        host, port = parse_address(args.listen, default_host="")
        root = Path(args.root)
        if not root.is_dir():
            raise ValueError(f"--root {args.root}: not a directory")
        tls = _site_tls(args)
    except ValueError as exc:
        print(f"quicproxy file-server: {exc}", file=sys.stderr)
        return 2
    route = RouteConfig("", static=root.resolve())
    config = Config(listen=_listen_on(host, port), upstreams=(), routes=(route,), tls=tls)
    return _serve_config(config, args.workers or 1)


def _load(path: str) -> Config | None:
    try:
        return load_config(Path(path))
    except ConfigError as exc:
        print(f"quicproxy: configuration error: {exc}", file=sys.stderr)
        return None


def _prepared(config: Config, workers: int) -> Config:
    """``config`` with the command line's worker count and the certificate paths filled in;
    ConfigError when a certificate cannot be used."""
    cert, key = certificate_paths(config.tls)
    try:
        load_certificates(replace(config.tls, cert=cert, key=key))
    except CertificateError as exc:
        raise ConfigError(f"{config.source}: tls: {exc}") from None
    return replace(
        config,
        server=replace(config.server, workers=workers),
        tls=replace(config.tls, cert=cert, key=key),
    )


def _cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    configure_logging(config.server.log_level, config.server.access_log)
    configure_access_log(config.server.access_log_format)
    workers = args.workers or config.server.workers
    if workers > 1 and any(item.port == 0 for item in config.listen):
        print("quicproxy: configuration error: port 0 needs workers = 1", file=sys.stderr)
        return 2
    path = Path(args.config)
    try:
        first = _prepared(config, workers)
    except ConfigError as exc:
        print(f"quicproxy: configuration error: {exc}", file=sys.stderr)
        return 2
    source = ConfigSource(lambda: _prepared(load_config(path), workers), first)

    async def make_server(reuse_port: bool) -> ProxyServer:
        return ProxyServer(source.current, reuse_port=reuse_port)

    with pidfile.written(config.server.pid_file):
        return serve(
            make_server,
            workers=workers,
            grace=config.server.grace_period,
            ready=announce,
            quic_addresses=quic_addresses(source.current),
            admin=AdminPlan.from_config(config),
            source=source,
        )


def _cmd_reload(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        print("quicproxy: not reloaded; the running proxy keeps its config", file=sys.stderr)
        return 2
    where = Path(args.pid_file) if args.pid_file else config.server.pid_file
    if where is None:
        print(
            f"quicproxy: {args.config}: set [server] pid_file (or pass --pid-file) to reload",
            file=sys.stderr,
        )
        return 2
    try:
        pid = pidfile.read_pid(where)
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"quicproxy: {exc}", file=sys.stderr)
        return 1
    print(f"quicproxy: asked process {pid} to reload {args.config}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    print(
        f"{args.config}: ok ({len(config.listen)} listeners, {len(config.upstreams)} upstreams,"
        f" {len(config.routes)} routes)"
    )
    return 0


def _cmd_certs(args: argparse.Namespace) -> int:
    certs = ensure_dev_certs(Path(args.dir) if args.dir else default_cert_dir())
    print(trust_instructions(certs))
    return 0


def _cmd_interop(args: argparse.Namespace) -> int:
    try:
        from interop import endpoint
    except ImportError as exc:
        print(f"quicproxy interop: the interop package is not installed ({exc})", file=sys.stderr)
        return 1
    return endpoint.main([args.role] if args.role else [])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="quicproxy", description="HTTP/3-first TLS-terminating reverse proxy"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="proxy to a built-in demo origin with dev certificates")
    demo.add_argument("--port", type=int, default=8443)
    demo.add_argument("--host", default="localhost", help="localhost = 127.0.0.1 and ::1")
    demo.add_argument("--cert-dir", help="where the dev certificates live")
    demo.add_argument("--workers", type=_workers, default=1)
    demo.add_argument("--log-level", default="info")
    demo.set_defaults(func=_cmd_demo)

    rp = sub.add_parser("reverse-proxy", help="a one-line reverse proxy, like caddy's")
    rp.add_argument("--from", dest="from_address", default="localhost:8443", metavar="[HOST]:PORT")
    rp.add_argument("--to", action="append", required=True, metavar="URL")
    rp.add_argument("--cert")
    rp.add_argument("--key")
    rp.add_argument("--insecure", action="store_true", help="skip upstream TLS verification")
    rp.add_argument("--workers", type=_workers, default=0, help="default: one per core")
    rp.add_argument("--log-level", default="info")
    rp.set_defaults(func=_cmd_reverse_proxy)

    files = sub.add_parser("file-server", help="serve a directory's files over h3, h2, h1")
    files.add_argument("--root", default=".", help="the directory (default: the current one)")
    files.add_argument("--listen", default="localhost:8443", metavar="[HOST]:PORT")
    files.add_argument("--cert")
    files.add_argument("--key")
    files.add_argument("--workers", type=_workers, default=1)
    files.add_argument("--log-level", default="info")
    files.set_defaults(func=_cmd_file_server)

    run = sub.add_parser("run", help="run from a TOML configuration file")
    run.add_argument("-c", "--config", required=True)
    run.add_argument("--workers", type=_workers, default=0, help="override server.workers")
    run.set_defaults(func=_cmd_run)

    reload = sub.add_parser("reload", help="make the running proxy re-read its configuration")
    reload.add_argument("-c", "--config", required=True, help="validated before signalling")
    reload.add_argument("--pid-file", help="default: the config's [server] pid_file")
    reload.set_defaults(func=_cmd_reload)

    check = sub.add_parser("check", help="validate a configuration file and exit")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(func=_cmd_check)

    certs = sub.add_parser("certs", help="create a development CA and localhost certificate")
    certs.add_argument("--dir")
    certs.set_defaults(func=_cmd_certs)

    interop = sub.add_parser(
        "interop",
        help="the QUIC interop runner's endpoint (see interop/README.md)",
        description="The QUIC interop runner's endpoint, as interop/run_endpoint.sh runs it."
        " Environment: TESTCASE, HOST, PORT, WWW, CERTS (server); REQUESTS, DOWNLOADS"
        " (client); SSLKEYLOGFILE, QLOGDIR. Exit status 127 for an unsupported test case.",
    )
    interop.add_argument(
        "role", nargs="?", choices=("server", "client"), help="default: the ROLE variable"
    )
    interop.set_defaults(func=_cmd_interop)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 0
    except EngineCompatError as exc:  # an untested aioquic: one line, no traceback
        print(f"quicproxy: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"quicproxy: {exc}", file=sys.stderr)
        return 1
