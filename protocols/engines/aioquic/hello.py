"""A server's look at the ClientHello: the SNI (to choose a certificate) and a 0-RTT offer.

aioquic serves one certificate per configuration and does not say whether a client offered
early data that it then refused. ``watch_hello`` wraps the TLS context of one server
connection so that ``on_hello(server_name, early_data_offered)`` runs when the ClientHello
arrives, before aioquic negotiates anything; it may return (certificate, chain, private key)
to serve, or None for the configured one. The hello is read twice (once here, without
consuming it); a hello that does not parse is left to aioquic, which answers with its alert.

Relies on aioquic's private TLS state (``PRIVATE_STATE``, checked by ``compat.check_compat``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aioquic import tls

__all__ = ["PRIVATE_STATE", "Certificate", "HelloWatcher", "watch_hello"]

PRIVATE_STATE: dict[str, tuple[str, ...]] = {
    "QuicConnection": ("_initialize",),  # it creates ``tls``, the connection's TLS context
    "tls.Context": ("_server_handle_hello",),
    "tls": ("pull_client_hello",),
}
"""The aioquic attributes used here, by the object that holds them (see compat)."""

Certificate = tuple[Any, Sequence[Any], Any]
"""(certificate, chain, private key) as cryptography objects."""

HelloWatcher = Callable[[str | None, bool], Certificate | None]
"""(SNI or None, 0-RTT offered) -> the certificate to serve, or None for the configured one."""


def watch_hello(context: tls.Context, on_hello: HelloWatcher) -> None:
    """Call ``on_hello`` when ``context`` (a server's, before its ClientHello) gets the hello."""
    handle_hello = context._server_handle_hello

    def watched(input_buf: Any, initial_buf: Any, handshake_buf: Any) -> None:
        start = input_buf.tell()
        try:
            hello = tls.pull_client_hello(input_buf)
        except Exception:  # malformed: aioquic's own parse answers it
            hello = None
        input_buf.seek(start)
        if hello is not None:
            chosen = on_hello(hello.server_name, bool(hello.early_data))
            if chosen is not None:
                context.certificate, chain, context.certificate_private_key = chosen
                context.certificate_chain = list(chain)
        handle_hello(input_buf, initial_buf, handshake_buf)

    context._server_handle_hello = watched  # type: ignore[method-assign]
