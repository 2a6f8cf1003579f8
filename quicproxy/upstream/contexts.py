"""ALPN per upstream protocol and a cache of TLS client contexts, one per TLS setting."""

from __future__ import annotations

import logging
import ssl

from ..net.tls import client_context
from .peer import HttpPeer

__all__ = ["ContextCache", "alpn_for"]

log = logging.getLogger("quicproxy.upstream")

_ALPN = {"h1": ["http/1.1"], "h2": ["h2"], "h3": ["h3"], "auto": ["h2", "http/1.1"]}


def alpn_for(peer: HttpPeer) -> list[str]:
    """The ALPN protocols offered to a TLS peer (over QUIC: ``h3``)."""
    return _ALPN.get(peer.protocol, ["http/1.1"])


class ContextCache:
    """One TLS client context per (verify, CA, client certificate, ALPN) setting."""

    def __init__(self) -> None:
        self._contexts: dict[tuple[object, ...], ssl.SSLContext] = {}

    def __len__(self) -> int:
        return len(self._contexts)

    def get(self, peer: HttpPeer) -> ssl.SSLContext | None:
        """The context for a TLS-over-TCP peer; None for a cleartext one."""
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
