"""TLS contexts: the downstream server context (ALPN h2 / http/1.1) and upstream client contexts."""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "client_context",
    "record_server_name",
    "server_context",
    "server_name",
    "tls_server_context",
]

# The SNI each server-side TLS connection sent, recorded during its handshake (the ssl module
# tells a server the name only through the SNI callback; SSLObject.server_hostname is the
# client role's). Weak keys: an entry goes with its connection.
_SERVER_NAMES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def record_server_name(connection: ssl.SSLObject | ssl.SSLSocket, name: str | None) -> None:
    """Remember the SNI of a server-side connection (call it from an SNI callback)."""
    if name:
        _SERVER_NAMES[connection] = name


def server_name(connection: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The SNI the client sent on this server-side TLS connection (None without one)."""
    return None if connection is None else _SERVER_NAMES.get(connection)


def tls_server_context(cert: Path, key: Path, alpn: Sequence[str]) -> ssl.SSLContext:
    """A TLS 1.2+ server context offering ``alpn`` in order of preference."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(list(alpn))
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def server_context(cert: Path, key: Path, alpn: Sequence[str]) -> ssl.SSLContext:
    """:func:`tls_server_context` that records each client's SNI for :func:`server_name`."""
    context = tls_server_context(cert, key, alpn)
    context.sni_callback = lambda connection, name, _ctx: record_server_name(connection, name)
    return context


def client_context(
    *,
    verify: bool = True,
    ca_file: Path | None = None,
    alpn: list[str] | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> ssl.SSLContext:
    """An upstream client context; ``verify=False`` disables certificate and hostname checks."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    if client_cert is not None:
        context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return context
