"""Dials upstream peers over net/ and wraps each connection in a client-role driver."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from protocols.h1 import H1ClientAdapter
from protocols.h2 import H2ClientAdapter

from ..errors import ErrorKind, ErrorSource, ProxyError
from ..net.tcp import ByteStream, describe_os_error, open_tcp
from ..net.tls import client_context
from ..tcpdriver import TcpDriver
from .peer import HttpPeer

__all__ = ["Connector", "UpstreamConnection", "alpn_for"]

log = logging.getLogger("quicproxy.upstream")

_ALPN = {"h1": ["http/1.1"], "h2": ["h2"], "auto": ["h2", "http/1.1"]}


def alpn_for(peer: HttpPeer) -> list[str]:
    """The ALPN protocols offered to a TLS peer."""
    return _ALPN.get(peer.protocol, ["http/1.1"])


class UpstreamConnection(TcpDriver):
    """One TCP connection to a peer: HTTP/1.1, or HTTP/2 (ALPN ``h2`` or cleartext h2c)."""

    def __init__(self, stream: ByteStream, peer: HttpPeer) -> None:
        if peer.tls:
            alpn = stream.alpn
            use_h2 = alpn == "h2"
        else:
            alpn = None
            use_h2 = peer.protocol == "h2"  # prior knowledge
        adapter = H2ClientAdapter() if use_h2 else H1ClientAdapter()
        super().__init__(
            stream,
            adapter,
            peer_side=ErrorSource.UPSTREAM,
            write_timeout=peer.timeouts.write,
            idle_timeout=peer.timeouts.idle,
            pause_on_buffer=not use_h2,
        )
        self.peer = peer
        self.alpn = alpn
        self.multiplexed = use_h2
        self.on_gone: Callable[[UpstreamConnection], None] | None = None
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
    """Opens connections; caches one TLS client context per TLS setting."""

    def __init__(self) -> None:
        self._contexts: dict[tuple[object, ...], ssl.SSLContext] = {}

    def _context(self, peer: HttpPeer) -> ssl.SSLContext | None:
        if not peer.tls:
            return None
        alpn = alpn_for(peer)
        key = (peer.verify, peer.ca_file, peer.client_cert, peer.client_key, tuple(alpn))
        context = self._contexts.get(key)
        if context is None:
            if not peer.verify:
                log.warning("TLS verification is off for upstream %s", peer.address)
            context = client_context(
                verify=peer.verify,
                ca_file=peer.ca_file,
                alpn=alpn,
                client_cert=peer.client_cert,
                client_key=peer.client_key,
            )
            self._contexts[key] = context
        return context

    async def connect(self, peer: HttpPeer) -> UpstreamConnection:
        """Open a new connection, mapping failures to ProxyError (connect errors are retryable)."""
        try:
            stream = await open_tcp(
                peer.host,
                peer.port,
                lambda s: UpstreamConnection(s, peer),
                ssl_context=self._context(peer),
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
        receiver = stream._receiver
        assert isinstance(receiver, UpstreamConnection)
        if peer.protocol == "h2" and peer.tls and not receiver.multiplexed:
            receiver.close_transport()
            raise ProxyError.upstream(
                ErrorKind.TLS_HANDSHAKE,
                f"{peer.address} did not agree to HTTP/2 (ALPN {receiver.alpn!r})",
                retry=False,
            )
        return receiver
