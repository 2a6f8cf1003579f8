"""Dials upstream peers over net/ and wraps each connection in a client-role driver."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from protocols.h1 import H1ClientAdapter
from protocols.messages import RequestHead

from ..errors import ErrorKind, ErrorSource, ProxyError
from ..net.tcp import ByteStream, open_tcp
from ..net.tls import client_context
from ..streamio import StreamIO
from ..tcpdriver import TcpDriver
from .peer import HttpPeer, PeerKey

__all__ = ["Connector", "UpstreamConnection"]

log = logging.getLogger("quicproxy.upstream")


class UpstreamConnection(TcpDriver):
    """One connection to a peer; ``on_idle`` hands it back to the pool after each exchange."""

    def __init__(self, stream: ByteStream, peer: HttpPeer) -> None:
        super().__init__(
            stream,
            H1ClientAdapter(),
            peer_side=ErrorSource.UPSTREAM,
            write_timeout=peer.timeouts.write,
            idle_timeout=peer.timeouts.idle,
            pause_on_buffer=True,
        )
        self.peer = peer
        self.requests = 0
        self.on_gone: Callable[[UpstreamConnection], None] | None = None

    @property
    def reusable(self) -> bool:
        """True when another request may go on this connection now."""
        return not self.closed and not self.going_away and self.adapter.available_streams() > 0

    def open_stream(self, head: RequestHead, end_stream: bool) -> StreamIO:
        """Send a request head; the returned stream carries its body and the response."""
        if self.closed:
            raise self.peer_error(ErrorKind.UPSTREAM_RESET, "connection closed")
        stream_id = self.adapter.send_request(head, end_stream)
        stream = StreamIO(self, stream_id)
        stream.local_ended = end_stream
        self.streams[stream_id] = stream
        self.requests += 1
        self.schedule_flush()
        return stream

    def on_lost(self) -> None:
        if self.on_gone is not None:
            self.on_gone(self)


class Connector:
    """Opens connections; caches one TLS client context per TLS setting."""

    def __init__(self) -> None:
        self._contexts: dict[PeerKey, ssl.SSLContext] = {}

    def _context(self, peer: HttpPeer) -> ssl.SSLContext | None:
        if not peer.tls:
            return None
        key = (peer.verify, peer.ca_file, peer.client_cert, peer.client_key)
        context = self._contexts.get(key)
        if context is None:
            if not peer.verify:
                log.warning("TLS verification is off for upstream %s", peer.address)
            context = client_context(
                verify=peer.verify,
                ca_file=peer.ca_file,
                alpn=["http/1.1"],
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
            )
        except TimeoutError:
            raise ProxyError.upstream(
                ErrorKind.CONNECT_TIMEOUT,
                f"connect to {peer.address} timed out after {peer.timeouts.connect:g}s",
            ) from None
        except ssl.SSLError as exc:
            raise ProxyError.upstream(
                ErrorKind.TLS_HANDSHAKE,
                f"TLS handshake with {peer.address} failed: {exc}",
                retry=False,
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ProxyError.upstream(
                ErrorKind.CONNECT_REFUSED, f"connect to {peer.address} failed: {reason}"
            ) from None
        receiver = stream._receiver
        assert isinstance(receiver, UpstreamConnection)
        return receiver
