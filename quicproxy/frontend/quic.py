"""QUIC frontend: the router and h3/hq adapters over a UDP endpoint; each request becomes a task."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.logger import QuicFileLogger
from aioquic.quic.packet import QuicProtocolVersion

from protocols.base import ServerQuicAdapter
from protocols.engines.aioquic import handshake_complete
from protocols.errors import ErrorCode
from protocols.events import ProtocolError
from protocols.messages import RequestHead
from protocols.quic import NetworkAddress, QuicFacts, QuicServerConnection
from protocols.quic_router import AddressValidation, QuicRouter

from ..config import LimitsConfig
from ..config_quic import QuicConfig
from ..errors import ErrorSource
from ..net import steering
from ..net.deadline import DeadlineTimer
from ..net.udp import Address, UdpEndpoint, open_udp_endpoint
from ..session import DownstreamInfo
from ..streamio import ConnectionDriver, ServerStream
from .base import RequestStarter, log_refusal

__all__ = ["QuicDriver", "QuicListener"]

log = logging.getLogger("quicproxy.frontend.quic")

DEFAULT_QUIC_CONFIG = QuicConfig()


class QuicDriver(ConnectionDriver[ServerQuicAdapter]):
    """The streams of one QUIC connection; sending means scheduling the listener's transmit."""

    def __init__(self, listener: QuicListener, conn: QuicServerConnection, addr: Address) -> None:
        assert conn.adapter is not None
        super().__init__(
            conn.adapter,
            peer_side=ErrorSource.DOWNSTREAM,
            write_timeout=listener.limits.write_timeout,
            stream_buffer=listener.limits.stream_buffer,
        )
        self.listener = listener
        self.conn = conn
        self.client_address = (str(addr[0]), int(addr[1]))
        self.handshake: asyncio.Future[None] = self.loop.create_future()
        self.check_handshake()

    def schedule_flush(self) -> None:
        self.listener.schedule_transmit(self.conn)

    def flush(self) -> None:
        self.listener.schedule_transmit(self.conn)

    def close_transport(self) -> None:
        self.conn.quic.close(error_code=ErrorCode.NO_ERROR.h3_code)
        self.listener.schedule_transmit(self.conn)

    def check_handshake(self) -> None:
        """Resolve ``handshake`` once the TLS handshake is complete."""
        if not self.handshake.done() and handshake_complete(self.conn.quic):
            self.handshake.set_result(None)
            self.listener.router.handshake_done(self.conn)

    def connection_failed(self, reason: str) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError(reason))
            self.handshake.exception()  # retrieved: nobody may be waiting
        super().connection_failed(reason)

    def on_protocol_error(self, event: ProtocolError) -> None:
        log_refusal(self.client_address, self.conn.facts.alpn or "h3", event)

    def on_request(self, stream: ServerStream, head: RequestHead, end_stream: bool) -> None:
        facts = self.conn.facts
        early = not self.handshake.done()  # this request came in 0-RTT
        info = DownstreamInfo(
            protocol=facts.alpn or "h3",
            client_address=self.client_address,
            server_address=self.listener.local_address,
            tls=True,
            sni=facts.sni,
            alpn=facts.alpn,
            early_data=early,
            quic=quic_session_facts(facts),
            handshake=self.handshake if early else None,
        )
        self.listener.starter.start(stream, head, end_stream, info)


def quic_session_facts(facts: QuicFacts) -> dict[str, Any]:
    """What ``session.downstream.quic`` tells hooks (a snapshot taken when the request began)."""
    return {
        "version": facts.version,
        "connection_id": facts.original_dcid,
        "host_connection_id": facts.host_cid,
        "rtt": facts.rtt,
        "zero_rtt": facts.early_data,
        "session_resumed": facts.session_resumed,
        "address_validated": facts.address_validated,
    }


class QuicListener:
    """One UDP socket serving HTTP/3 (and hq-interop) connections.

    With ``preferred_address`` in the options, a socket is bound on each preferred address too;
    a connection's packets leave through the socket its latest packet arrived on.
    """

    def __init__(
        self,
        starter: RequestStarter,
        limits: LimitsConfig,
        configuration: QuicConfiguration,
        options: QuicConfig = DEFAULT_QUIC_CONFIG,
        cid_factory: Callable[[], bytes] | None = None,
        stateless_reset: bool = True,
    ) -> None:
        self.starter = starter
        self.limits = limits
        self.options = options
        self.router = QuicRouter(
            configuration,
            validation=AddressValidation(
                retry=options.retry,
                retry_threshold=options.retry_threshold,
                new_token=options.new_token,
                token_lifetime=options.token_lifetime,
            ),
            limits=limits,
            max_connections=options.max_connections,
            max_connections_per_source=options.max_connections_per_source,
            qpack=(options.qpack_max_table_capacity, options.qpack_blocked_streams),
            cid_factory=cid_factory or steering.cid_factory(),
            preferred_address=_preferred(options.preferred_address),
            stateless_reset=stateless_reset,
        )
        self.loop = asyncio.get_running_loop()
        self.endpoint: UdpEndpoint | None = None
        self.extra_endpoints: list[UdpEndpoint] = []
        self.drivers: dict[QuicServerConnection, QuicDriver] = {}
        self.timers: dict[QuicServerConnection, DeadlineTimer] = {}
        self.paths: dict[QuicServerConnection, UdpEndpoint] = {}
        self._pending: set[QuicServerConnection] = set()
        self._transmit_scheduled = False
        self.accepting = True

    @classmethod
    async def start(
        cls,
        host: str,
        port: int,
        starter: RequestStarter,
        limits: LimitsConfig,
        cert: Path,
        key: Path,
        reuse_port: bool = False,
        options: QuicConfig = DEFAULT_QUIC_CONFIG,
        cid_factory: Callable[[], bytes] | None = None,
    ) -> QuicListener:
        """Bind ``host:port`` (and any preferred addresses) over UDP and serve."""
        configuration = QuicConfiguration(
            is_client=False,
            alpn_protocols=["h3", "hq-interop"],
            idle_timeout=limits.idle_timeout,
            max_datagram_size=limits.quic_max_datagram_size,
            supported_versions=[QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2],
        )
        configuration.load_cert_chain(str(cert), str(key))
        if options.keylog_file is not None:
            configuration.secrets_log_file = options.keylog_file.open("a", buffering=1)
        if options.qlog_dir is not None:
            options.qlog_dir.mkdir(parents=True, exist_ok=True)
            configuration.quic_logger = QuicFileLogger(str(options.qlog_dir))
        # Workers sharing a port by hash alone may own connections this one does not know.
        steered = steering.cid_factory() is not None
        listener = cls(
            starter, limits, configuration, options, cid_factory, not reuse_port or steered
        )
        listener.endpoint = await listener._bind(host, port, reuse_port)
        for extra_host, extra_port in options.preferred_address:
            endpoint = await listener._bind(extra_host, extra_port, reuse_port)
            listener.extra_endpoints.append(endpoint)
        return listener

    async def _bind(self, host: str, port: int, reuse_port: bool) -> UdpEndpoint:
        holder: list[UdpEndpoint] = []
        endpoint = await open_udp_endpoint(
            host,
            port,
            lambda data, addr, ecn: self.datagram_received(data, addr, holder[0], ecn),
            reuse_port=reuse_port,
            sock=steering.take_socket(host, port),
            ecn=self.options.ecn,
        )
        holder.append(endpoint)
        return endpoint

    @property
    def local_address(self) -> tuple[str, int]:
        """The bound host and port."""
        assert self.endpoint is not None
        address = self.endpoint.local_address
        return (str(address[0]), int(address[1]))

    def datagram_received(
        self, data: bytes, addr: Address, endpoint: UdpEndpoint | None = None, ecn: int = 0
    ) -> None:
        """Route one datagram; runs synchronously in the endpoint's callback."""
        endpoint = endpoint or self.endpoint
        result = self.router.receive_datagram(data, addr, self.loop.time(), ecn)
        if result.replies and endpoint is not None:
            endpoint.send(result.replies)
        conn = result.connection
        if conn is None:
            return
        if self.extra_endpoints:  # preferred addresses: answer from where the client sends
            if endpoint is not None and endpoint is not self.endpoint:
                self.paths[conn] = endpoint
            else:
                self.paths.pop(conn, None)
        if result.new and not self.accepting:
            conn.quic.close(error_code=ErrorCode.REFUSED_STREAM.h3_code)
        driver = self._driver(conn, addr)
        if driver is not None:
            driver.check_handshake()
            if result.events:
                driver.handle_events(result.events)
        self.schedule_transmit(conn)

    def _driver(self, conn: QuicServerConnection, addr: Address) -> QuicDriver | None:
        driver = self.drivers.get(conn)
        if driver is None and conn.adapter is not None:
            driver = self.drivers[conn] = QuicDriver(self, conn, addr)
        return driver

    def schedule_transmit(self, conn: QuicServerConnection) -> None:
        """Send this connection's datagrams once, at the end of this event-loop iteration."""
        self._pending.add(conn)
        if not self._transmit_scheduled:
            self._transmit_scheduled = True
            self.loop.call_soon(self._transmit_pending)

    def _transmit_pending(self) -> None:
        self._transmit_scheduled = False
        pending, self._pending = self._pending, set()
        now = self.loop.time()
        for conn in pending:
            self._transmit(conn, now)

    def _transmit(self, conn: QuicServerConnection, now: float) -> None:
        datagrams = conn.datagrams_to_send(now)
        endpoint = self.paths.get(conn, self.endpoint)
        if datagrams and endpoint is not None:
            endpoint.send(datagrams)
        events = conn.pending_events()
        driver = self.drivers.get(conn)
        if events and driver is not None:
            driver.handle_events(events)
        if conn.closed:
            self._forget(conn)
            return
        timer = self.timers.get(conn)
        if timer is None:
            timer = self.timers[conn] = DeadlineTimer(self.loop, lambda: self._on_timer(conn))
        timer.rearm(conn.timer())

    def _on_timer(self, conn: QuicServerConnection) -> None:
        now = self.loop.time()
        events = conn.handle_timer(now)
        driver = self.drivers.get(conn)
        if events and driver is not None:
            driver.handle_events(events)
        self._transmit(conn, now)

    def _forget(self, conn: QuicServerConnection) -> None:
        timer = self.timers.pop(conn, None)
        if timer is not None:
            timer.cancel()
        driver = self.drivers.pop(conn, None)
        if driver is not None:
            driver.connection_failed("QUIC connection closed")
        self.paths.pop(conn, None)
        self.router.remove(conn)

    def stop_accepting(self) -> None:
        """Refuse new connections; tell existing ones with GOAWAY and let their requests finish."""
        self.accepting = False
        for conn, driver in list(self.drivers.items()):
            driver.adapter.close(ErrorCode.NO_ERROR)
            self.schedule_transmit(conn)

    @property
    def connection_count(self) -> int:
        """Open QUIC connections."""
        return len(self.router.connections())

    def close(self) -> None:
        """Close every connection and the socket."""
        for conn in self.router.connections():
            conn.quic.close(error_code=ErrorCode.NO_ERROR.h3_code)
            self._transmit(conn, self.loop.time())
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        for endpoint in [self.endpoint, *self.extra_endpoints]:
            if endpoint is not None:
                endpoint.close()


def _preferred(
    addresses: tuple[tuple[str, int], ...],
) -> tuple[NetworkAddress | None, NetworkAddress | None] | None:
    """(IPv4, IPv6) preferred addresses for the transport parameter, or None."""
    if not addresses:
        return None
    ipv4 = next((a for a in addresses if ipaddress.ip_address(a[0]).version == 4), None)
    ipv6 = next((a for a in addresses if ipaddress.ip_address(a[0]).version == 6), None)
    return ipv4, ipv6
