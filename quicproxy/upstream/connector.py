"""Connector: dials upstream peers of every protocol (h1, h2 over TCP; h3 over QUIC)."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from protocols.base import ClientTcpAdapter
from protocols.h1 import H1ClientAdapter
from protocols.h2 import H2ClientAdapter

from ..config import LimitsConfig
from ..errors import ErrorKind, ErrorSource, ProxyError
from ..net.tcp import ByteStream, describe_os_error, open_tcp
from ..tcpdriver import TcpDriver
from .connection import PooledConnection
from .contexts import ContextCache, alpn_for
from .limits import UpstreamLimits
from .peer import HttpPeer
from .quic_client import H3UpstreamConnection, QuicResumption

__all__ = ["Connector", "UpstreamConnection", "alpn_for"]


class UpstreamConnection(TcpDriver[ClientTcpAdapter]):
    """One TCP connection to a peer: HTTP/1.1, or HTTP/2 (ALPN ``h2`` or cleartext h2c)."""

    def __init__(self, stream: ByteStream, peer: HttpPeer, stream_buffer: int) -> None:
        if peer.tls:
            alpn = stream.alpn
            use_h2 = alpn == "h2"
        else:
            alpn = None
            use_h2 = peer.protocol == "h2"  # prior knowledge
        adapter = H2ClientAdapter(initial_window=stream_buffer) if use_h2 else H1ClientAdapter()
        super().__init__(
            stream,
            adapter,
            peer_side=ErrorSource.UPSTREAM,
            write_timeout=peer.timeouts.write,
            idle_timeout=peer.timeouts.idle,
            stream_buffer=stream_buffer,
        )
        self.peer = peer
        self.alpn = alpn
        self.multiplexed = use_h2
        self.on_gone: Callable[[PooledConnection], None] | None = None
        self.flush()  # the HTTP/2 connection preface

    @property
    def protocol(self) -> str:
        """``h2`` or ``h1``."""
        return "h2" if self.multiplexed else "h1"

    @property
    def reusable(self) -> bool:
        """True when another request may go on this connection now."""
        return not self.closed and not self.going_away and self.adapter.available_streams() > 0

    def on_lost(self) -> None:
        if self.on_gone is not None:
            self.on_gone(self)


class Connector:
    """Opens connections to peers of every protocol with one set of limits. Owns the TLS client
    contexts (one per TLS setting) and, for QUIC, the session tickets and NEW_TOKEN tokens
    that let the next connection to the same peer key resume and skip a Retry."""

    def __init__(self, limits: LimitsConfig | UpstreamLimits | None = None) -> None:
        if not isinstance(limits, UpstreamLimits):
            limits = UpstreamLimits.from_config(limits)
        self.limits = limits
        self.contexts = ContextCache()
        self.quic = QuicResumption(limits.peer_cache_size)

    async def connect(self, peer: HttpPeer) -> PooledConnection:
        """Open a new connection to ``peer`` (h3: QUIC; else TCP, TLS with ALPN or cleartext),
        mapping failures to ProxyError (connect errors are retryable)."""
        if peer.protocol == "h3":
            return await H3UpstreamConnection.connect(peer, self.limits, self.quic)
        return await self._connect_tcp(peer)

    async def _connect_tcp(self, peer: HttpPeer) -> UpstreamConnection:
        buffer = self.limits.stream_buffer
        try:
            stream = await open_tcp(
                peer.host,
                peer.port,
                lambda s: UpstreamConnection(s, peer, buffer),
                ssl_context=self.contexts.get(peer),
                server_hostname=peer.server_name,
                connect_timeout=peer.timeouts.connect,
                tls_handshake_timeout=peer.timeouts.tls_handshake,
            )
        except (TimeoutError, ConnectionAbortedError):
            raise ProxyError.upstream(
                ErrorKind.CONNECT_TIMEOUT,
                f"connect to {peer.address} timed out (connect {peer.timeouts.connect:g}s"
                + (f", TLS handshake {peer.timeouts.tls_handshake:g}s)" if peer.tls else ")"),
            ) from None
        except ssl.SSLError as exc:
            raise ProxyError.upstream(
                ErrorKind.TLS_HANDSHAKE,
                f"TLS handshake with {peer.address} failed: {exc}",
                retry=False,
            ) from None
        except OSError as exc:
            reason = describe_os_error(exc)
            raise ProxyError.upstream(
                ErrorKind.CONNECT_REFUSED, f"connect to {peer.address} failed: {reason}"
            ) from None
        receiver = stream.receiver
        assert isinstance(receiver, UpstreamConnection)
        if peer.protocol == "h2" and peer.tls and not receiver.multiplexed:
            receiver.close_transport()
            raise ProxyError.upstream(
                ErrorKind.TLS_HANDSHAKE,
                f"{peer.address} did not agree to HTTP/2 (ALPN {receiver.alpn!r})",
                retry=False,
            )
        return receiver
