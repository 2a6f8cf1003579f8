"""The ``[quic]`` configuration table: address validation, 0-RTT policy, migration, limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from .config_reader import Table, parse_address, table_path

__all__ = ["QuicConfig", "parse_quic"]


@dataclass(frozen=True, slots=True)
class QuicConfig:
    """QUIC listener features (see README "[quic]")."""

    retry: str = "auto"  # "off", "always", or "auto": above retry_threshold new conns/s
    retry_threshold: int = 200
    new_token: bool = True
    token_lifetime: float = 86400.0
    early_data_unsafe: str = "reject"  # unsafe requests in 0-RTT: "reject" (425) or "hold"
    preferred_address: tuple[tuple[str, int], ...] = ()  # at most one IPv4 and one IPv6
    max_connections: int = 10000
    max_connections_per_source: int = 200  # QUIC connections from one client IP; 0 = no limit
    qpack_max_table_capacity: int = 4096
    qpack_blocked_streams: int = 16
    ecn: bool = False  # mark QUIC packets ECT(0); received marks are always reported
    keylog_file: Path | None = None
    qlog_dir: Path | None = None


def parse_quic(table: Table, base: Path) -> QuicConfig:
    """The ``[quic]`` table."""
    retry = table.get("retry", (bool, str), "auto")
    if isinstance(retry, bool):
        retry = "always" if retry else "off"
    if retry not in ("off", "always", "auto"):
        raise table.error("retry", 'must be true, false, "off", "always" or "auto"')
    unsafe = table.get("early_data_unsafe", str, "reject")
    if unsafe not in ("reject", "hold"):
        raise table.error("early_data_unsafe", 'must be "reject" (425 Too Early) or "hold"')
    preferred = table.get("preferred_address", (str, list), [])
    items = [preferred] if isinstance(preferred, str) else preferred
    addresses = tuple(_preferred_address(table, item) for item in items)
    families = [":" in host for host, _ in addresses]
    if len(set(families)) != len(families):
        raise table.error("preferred_address", "takes at most one IPv4 and one IPv6 address")
    config = QuicConfig(
        retry=retry,
        retry_threshold=table.integer("retry_threshold", 200, minimum=0),
        new_token=table.get("new_token", bool, True),
        token_lifetime=table.number("token_lifetime", 86400.0, minimum=1.0),
        early_data_unsafe=unsafe,
        preferred_address=addresses,
        max_connections=table.integer("max_connections", 10000, minimum=1),
        max_connections_per_source=table.integer("max_connections_per_source", 200),
        qpack_max_table_capacity=table.integer(
            "qpack_max_table_capacity", 4096, minimum=0, maximum=2**20
        ),
        qpack_blocked_streams=table.integer("qpack_blocked_streams", 16, minimum=0, maximum=1000),
        ecn=table.get("ecn", bool, False),
        keylog_file=table_path(table, "keylog_file", base),
        qlog_dir=table_path(table, "qlog_dir", base),
    )
    table.finish()
    return config


def _preferred_address(table: Table, item: object) -> tuple[str, int]:
    if not isinstance(item, str):
        raise table.error("preferred_address", "must be a string or a list of strings")
    try:
        host, port = parse_address(item)
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise table.error("preferred_address", f"{item!r} is not IP:port ({exc})") from None
    if ipaddress.ip_address(host).is_unspecified or port == 0:
        raise table.error("preferred_address", f"{item!r} needs a concrete address and port")
    return host, port
