"""Server lifecycle: listeners, dev certificates, graceful drain, signals and worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from protocols.engines.aioquic import check_compat

from .accesslog import configure_access_log
from .admin import AdminPlan
from .altsvc import AltSvcPolicy
from .config import Config, ListenConfig, QuicConfig, TlsConfig, parse_address
from .devcerts import default_cert_dir, ensure_dev_certs
from .forwarding import ForwardingPolicy
from .frontend.base import RequestStarter
from .frontend.quic import QuicListener
from .frontend.tcp import DownstreamTcp, tcp_connection_factory
from .hooks import ProxyHttp
from .net import steering
from .net.certs import Certificates, CertificateStore, Entry
from .net.proxied import ProxiedServer, start_proxied_server
from .net.tcp import ByteStream, Receiver, start_tcp_server
from .pipeline import ProxyServices
from .proxy import BuiltinProxy
from .reload import ConfigSource, Reloader, load_certificates, restart_needed
from .upstream.connector import Connector
from .upstream.pool import UpstreamPool

__all__ = [
    "ProxyServer",
    "announce",
    "certificate_paths",
    "configure_logging",
    "serve",
    "serve_proxy",
]

log = logging.getLogger("quicproxy.server")

QUIC_LINGER = 1.0


class ProxyServer:
    """Everything one worker runs: TCP and QUIC listeners sharing one proxy and one pool."""

    def __init__(
        self,
        config: Config,
        proxy: ProxyHttp[Any] | None = None,
        *,
        reuse_port: bool = False,
        quic_options: QuicConfig | None = None,
    ) -> None:
        self.config = config
        self.quic_options = quic_options or config.quic
        connector = Connector(config.limits)  # the pool's, shared by the built-in health checks
        self.connector = connector
        self.builtin = proxy is None  # a reload rebuilds the built-in proxy from the new config
        self.proxy: ProxyHttp[Any] = proxy if proxy is not None else BuiltinProxy(config, connector)
        self.reuse_port = reuse_port
        self.limits = config.limits
        h3_ports = [item.port for item in config.listen if item.quic]
        self.altsvc = AltSvcPolicy(
            h3_ports[0] if h3_ports and config.alt_svc.enabled else None,
            config.alt_svc.max_age,
        )
        fwd = config.forwarding
        self.services = ProxyServices(
            pool=UpstreamPool(connector),
            altsvc=self.altsvc,
            limits=config.limits,
            hold_unsafe_early_data=self.quic_options.early_data_unsafe == "hold",
            forwarding=ForwardingPolicy(
                fwd.trusted_proxies, fwd.via, fwd.x_forwarded, fwd.forwarded
            ),
        )
        self.starter = RequestStarter(self.proxy, self.services)
        self.tcp_servers: list[asyncio.Server | ProxiedServer] = []
        self.quic_listeners: list[QuicListener] = []
        self.tcp_connections: set[DownstreamTcp] = set()
        self.addresses: list[tuple[str, int, bool]] = []  # host, port, quic
        self.certificates: Certificates | None = None  # loaded by start()

    async def start(self) -> None:
        """Bind every listener; a port of 0 binds TCP and UDP to one free port number."""
        self.certificates = Certificates(load_certificates(self.config.tls))
        cert, key = certificate_paths(self.config.tls)
        await self.proxy.startup()
        tls_context = self.certificates.context
        for item in self.config.listen:
            port = await self._listen(item, tls_context, cert, key)
            self.addresses.append((item.host, port, item.quic))
            protocols = (
                "h3, h2, http/1.1"
                if item.quic
                else ("h2, http/1.1" if item.tls else _cleartext(item))
            )
            log.info("listening on %s port %d (%s)", item.host, port, protocols)
        if self.altsvc.h3_port == 0:
            self.altsvc.h3_port = next(port for _, port, quic in self.addresses if quic)

    async def _listen(self, item: ListenConfig, tls_context: Any, cert: Any, key: Any) -> int:
        factory = tcp_connection_factory(
            self.starter, self.limits, item.tls, self.tcp_connections, h2c=item.h2c
        )
        for _ in range(10 if item.port == 0 else 1):
            tcp = await self._tcp_listener(item, factory, tls_context if item.tls else None)
            port = int(tcp.sockets[0].getsockname()[1])
            if not item.quic:
                self.tcp_servers.append(tcp)
                return port
            try:
                quic = await QuicListener.start(
                    item.host,
                    port,
                    self.starter,
                    self.limits,
                    cert,
                    key,
                    reuse_port=self.reuse_port,
                    options=self.quic_options,
                )
            except OSError:
                tcp.close()
                if item.port != 0:
                    raise
                continue
            self.tcp_servers.append(tcp)
            self.quic_listeners.append(quic)
            self._serve_certificates(quic)
            return port
        raise OSError(f"no port free for both TCP and UDP on {item.host}")

    async def _tcp_listener(
        self,
        item: ListenConfig,
        factory: Callable[[ByteStream], Receiver],
        tls_context: ssl.SSLContext | None,
    ) -> asyncio.Server | ProxiedServer:
        if item.proxy_protocol_from:
            return await start_proxied_server(
                item.host,
                item.port,
                factory,
                ssl_context=tls_context,
                trusted=item.proxy_protocol_from,
                header_timeout=self.limits.header_timeout,
                reuse_port=self.reuse_port,
            )
        return await start_tcp_server(
            item.host, item.port, factory, ssl_context=tls_context, reuse_port=self.reuse_port
        )

    def _serve_certificates(self, quic: QuicListener) -> None:
        """Give ``quic`` the current default certificate, and the choice by SNI if several."""
        assert self.certificates is not None
        store = self.certificates.store
        configuration = quic.router.configuration
        configuration.certificate = store.default.certificate
        configuration.certificate_chain = list(store.default.chain)
        configuration.private_key = store.default.private_key
        quic.router.certificate_for = self._quic_certificate if len(store.entries) > 1 else None

    def _quic_certificate(self, server_name: str | None) -> tuple[Any, Sequence[Any], Any]:
        assert self.certificates is not None
        entry: Entry = self.certificates.store.pick(server_name)
        return entry.certificate, entry.chain, entry.private_key

    def use_certificates(self, store: CertificateStore) -> None:
        """Serve ``store`` to every new TLS and QUIC handshake."""
        assert self.certificates is not None
        self.certificates.replace(store)
        for quic in self.quic_listeners:
            self._serve_certificates(quic)

    async def reload(self, config: Config) -> list[str]:
        """Apply ``config`` to new requests and handshakes; requests in flight finish as they
        began. Returns what changed that only a restart applies (left as it was).
        Raises CertificateError (nothing applied) when a certificate cannot be used."""
        store = load_certificates(config.tls)
        pending = restart_needed(self.config, config)
        old = self.proxy
        if self.builtin:
            proxy = BuiltinProxy(config, self.connector)
            await proxy.startup()
            self.proxy = self.starter.proxy = proxy
        fwd = config.forwarding
        self.services.forwarding = ForwardingPolicy(
            fwd.trusted_proxies, fwd.via, fwd.x_forwarded, fwd.forwarded
        )
        self.services.hold_unsafe_early_data = config.quic.early_data_unsafe == "hold"
        quic_ports = [port for _, port, quic in self.addresses if quic]
        self.altsvc.h3_port = quic_ports[0] if quic_ports and config.alt_svc.enabled else None
        self.altsvc.max_age = config.alt_svc.max_age
        self.use_certificates(store)
        if config.server != self.config.server:
            apply_log_settings(config.server.log_level, config.server.access_log)
            configure_access_log(config.server.access_log_format)
        self.config = config
        if old is not self.proxy:
            await old.shutdown()  # health checks of the old balancers stop
        return pending

    async def drain(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish within ``grace`` seconds, then stop."""
        self.altsvc.draining = True
        for tcp in self.tcp_servers:
            tcp.close()
        for quic in self.quic_listeners:
            quic.stop_accepting()
        for conn in list(self.tcp_connections):
            conn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if self.starter.tasks:
            await asyncio.wait(set(self.starter.tasks), timeout=grace)
        if any(quic.connection_count for quic in self.quic_listeners):
            # QUIC clients get a moment to finish and close themselves before CONNECTION_CLOSE.
            await asyncio.sleep(max(0.0, min(QUIC_LINGER, deadline - loop.time())))
        if self.starter.in_flight:
            log.warning("grace period over: cancelling %d requests", self.starter.in_flight)
        await self.close()

    async def close(self) -> None:
        """Stop everything now."""
        for tcp in self.tcp_servers:
            tcp.close()
        await self.starter.cancel_all()
        for conn in list(self.tcp_connections):
            conn.close_transport()
        for quic in self.quic_listeners:
            quic.close()
        self.services.pool.close()
        await self.proxy.shutdown()


def certificate_paths(tls: TlsConfig) -> tuple[Path, Path]:
    """The configured certificate, or the development one (created if missing).

    Call it before forking workers so that they do not race to create certificates.
    """
    if tls.cert is not None and tls.key is not None:
        return tls.cert, tls.key
    certs = ensure_dev_certs(tls.dev_cert_dir or default_cert_dir())
    return certs.cert, certs.key


def configure_logging(level: str, access_log: bool = True) -> None:
    """Log to stderr; the access log goes through the ``quicproxy.access`` logger."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s", stream=sys.stderr
    )
    apply_log_settings(level, access_log)
    logging.getLogger("quic").setLevel(logging.WARNING)


def apply_log_settings(level: str, access_log: bool) -> None:
    """Set the log level and turn the access log on or off (at start and on reload)."""
    logging.getLogger().setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("quicproxy.access").setLevel(logging.INFO if access_log else logging.WARNING)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve_one(
    make_server: Callable[[bool], Awaitable[ProxyServer]],
    reuse_port: bool,
    grace: float,
    ready: Callable[[ProxyServer], None] | None,
    source: ConfigSource | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await make_server(reuse_port)
    await server.start()
    reloader = Reloader(server, source)
    reloader.start()
    loop.add_signal_handler(signal.SIGHUP, reloader.on_sighup)
    if ready is not None:
        ready(server)
    await stop.wait()
    reloader.stop()
    log.info("stopping: draining for up to %gs", grace)
    await server.drain(grace)


def serve(
    make_server: Callable[[bool], Awaitable[ProxyServer]],
    *,
    workers: int = 1,
    grace: float = 10.0,
    ready: Callable[[ProxyServer], None] | None = None,
    quic_addresses: Sequence[tuple[str, int]] = (),
    admin: AdminPlan | None = None,
    source: ConfigSource | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; with ``workers`` > 1, fork that many processes sharing the ports
    through SO_REUSEPORT and restart any that dies. Returns the exit status.

    SIGHUP reloads (see ``quicproxy.reload``): ``source`` re-reads the config; without one, the
    certificate files are read again. ``make_server`` should build from ``source.current``, so
    that a worker started after a reload gets the new config.

    With ``admin``, this process serves the admin listener and the proxy runs in a child (see
    ``quicproxy.admin``).

    QUIC packets for ``quic_addresses`` are steered to the worker owning their connection ID
    (see ``quicproxy.net.steering``), so migrating clients keep reaching their connection.
    Raises ``EngineCompatError`` first when the installed aioquic is untested.
    """
    check_compat()
    _install_uvloop()
    if admin is not None:
        from .admin.runner import run_beside

        def proxy(factory: Callable[[bool], Awaitable[ProxyServer]]) -> int:
            return serve(
                factory,
                workers=workers,
                grace=grace,
                ready=ready,
                quic_addresses=quic_addresses,
                source=source,
            )

        return run_beside(admin, make_server, proxy)
    if workers <= 1:
        asyncio.run(_serve_one(make_server, False, grace, ready, source))
        return 0
    if steering.prepare(quic_addresses, workers):
        log.info("QUIC packets are steered to workers by connection ID")
    return _supervise(make_server, workers, grace, ready, source)


def _supervise(
    make_server: Callable[[bool], Awaitable[ProxyServer]],
    workers: int,
    grace: float,
    ready: Callable[[ProxyServer], None] | None,
    source: ConfigSource | None,
) -> int:
    stopping = False
    children: dict[int, int] = {}

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            steering.enter_worker(index)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's loop handles it
            code = 0
            try:
                first = ready if index == 0 else None
                asyncio.run(_serve_one(make_server, True, grace, first, source))
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            os._exit(code)
        children[pid] = index

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def reload(_signum: int, _frame: object) -> None:
        if source is not None and source.refresh() is None:
            return  # broken: logged, and the workers are not asked
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    for index in range(workers):
        spawn(index)
    log.info("started %d workers", workers)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, 0)
        if not stopping:
            log.warning("worker %d (pid %d) exited with status %d: restarting", index, pid, status)
            spawn(index)
    return 0


def serve_proxy(
    make_proxy: Callable[[], ProxyHttp[Any]],
    listen: Sequence[str] = ("127.0.0.1:8443",),
    *,
    cert: Path | None = None,
    key: Path | None = None,
    workers: int = 1,
    log_level: str = "info",
) -> int:
    """Run a user's ProxyHttp on ``listen`` addresses (TCP+TLS and QUIC on each) until stopped.

    ``make_proxy`` is called once per worker process. Without ``cert``/``key`` the development
    certificates are used (created if missing).
    """
    configure_logging(log_level)
    cert, key = certificate_paths(TlsConfig(cert, key))
    listeners = []
    for text in listen:
        host, port = parse_address(text)
        listeners.append(ListenConfig(host, port, True, True))
    config = Config(listen=tuple(listeners), upstreams=(), routes=(), tls=TlsConfig(cert, key))

    async def make_server(reuse_port: bool) -> ProxyServer:
        return ProxyServer(config, make_proxy(), reuse_port=reuse_port)

    return serve(
        make_server,
        workers=workers,
        grace=10.0,
        ready=announce,
        quic_addresses=quic_addresses(config),
    )


def quic_addresses(config: Config) -> list[tuple[str, int]]:
    """Every UDP address the QUIC listeners of ``config`` bind (steered across workers)."""
    listen = [(item.host, item.port) for item in config.listen if item.quic and item.port]
    return listen + list(config.quic.preferred_address)


def _cleartext(item: ListenConfig) -> str:
    return "h2c, http/1.1" if item.h2c else "http/1.1"


def announce(server: ProxyServer) -> None:
    """Print where the proxy answers, on stdout, once it listens."""
    for item, (host, port, quic) in zip(server.config.listen, server.addresses, strict=True):
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if item.tls else "http"
        protocols = (
            "h3, h2, http/1.1" if quic else ("h2, http/1.1" if item.tls else _cleartext(item))
        )
        print(f"quicproxy ready: {scheme}://{shown}:{port}/ ({protocols})", flush=True)
