"""The access log: one line per request on the ``quicproxy.access`` logger, as text or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import IO, Any

from .config import ACCESS_LOG_FORMATS
from .errors import ProxyError
from .session import Session
from .tracing import trace_id_of

__all__ = ["ACCESS_LOG_FORMATS", "access_record", "configure_access_log", "log_request"]

access_log = logging.getLogger("quicproxy.access")

_format = "text"
_json_handler: logging.Handler | None = None


def configure_access_log(fmt: str, stream: IO[str] | None = None) -> None:
    """``text``: lines through the usual log handlers. ``json``: one bare JSON object per line
    on ``stream`` (stderr by default), without the log prefix, so each line parses as JSON."""
    global _format, _json_handler
    if fmt not in ACCESS_LOG_FORMATS:
        raise ValueError(f"access log format must be one of {', '.join(ACCESS_LOG_FORMATS)}")
    if _json_handler is not None:
        access_log.removeHandler(_json_handler)
        _json_handler = None
    _format = fmt
    access_log.propagate = fmt == "text"
    if fmt == "json":
        _json_handler = logging.StreamHandler(stream or sys.stderr)
        _json_handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(_json_handler)


def _client(session: Session) -> str:
    host, port = session.downstream.client_address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def access_record(session: Session, error: ProxyError | None, now: float) -> dict[str, Any]:
    """The fields of one request's log line (``now``: a time.time() value)."""
    request = session.request
    return {
        "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        "client": _client(session),
        "protocol": session.downstream.protocol,
        "sni": session.downstream.sni,
        "method": request.method,
        "authority": request.authority,
        "path": request.path,
        "status": session.response_status or (error.status if error else 0),
        "bytes_in": session.bytes_in,
        "bytes_out": session.bytes_out,
        "duration_ms": round((time.monotonic() - session.started) * 1000, 3),
        "upstream": session.upstream_address,
        "error": str(error) if error else None,
        "trace_id": trace_id_of(request),
    }


def log_request(session: Session, error: ProxyError | None) -> None:
    """Log client, protocol, request line, status, bytes each way, duration, upstream, trace id
    (and the error, if any)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    record = access_record(session, error, time.time())
    if _format == "json":
        access_log.info("%s", json.dumps(record, separators=(",", ":")))
        return
    access_log.info(
        '%s %s "%s %s %s" %d in=%d out=%d %.1fms upstream=%s trace=%s%s',
        record["client"],
        record["protocol"],
        record["method"],
        record["authority"],
        record["path"],
        record["status"],
        record["bytes_in"],
        record["bytes_out"],
        record["duration_ms"],
        record["upstream"] or "-",
        record["trace_id"] or "-",
        f' error="{error}"' if error else "",
    )
