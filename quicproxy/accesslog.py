"""The access log: one line per request on the ``quicproxy.access`` logger."""

from __future__ import annotations

import logging
import time

from .errors import ProxyError
from .session import Session

__all__ = ["log_request"]

access_log = logging.getLogger("quicproxy.access")


def log_request(session: Session, error: ProxyError | None) -> None:
    """Log client, protocol, request line, status, bytes each way, duration and upstream."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    host, port = session.downstream.client_address[:2]
    client = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = session.request
    status = session.response_status or (error.status if error else 0)
    access_log.info(
        '%s %s "%s %s %s" %d in=%d out=%d %.1fms upstream=%s%s',
        client,
        session.downstream.protocol,
        request.method,
        request.authority,
        request.path,
        status,
        session.bytes_in,
        session.bytes_out,
        (time.monotonic() - session.started) * 1000,
        session.upstream_address or "-",
        f' error="{error}"' if error else "",
    )
