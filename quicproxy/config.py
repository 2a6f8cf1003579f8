"""Configuration: TOML into frozen dataclasses, validated at load with errors naming the key."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from protocols.limits import DEFAULT_LIMITS, ConnectionLimits

from .config_quic import QuicConfig, parse_quic
from .config_reader import (
    ConfigError,
    IPNetwork,
    Table,
    parse_address,
    parse_upstream_url,
    table_path,
)
from .config_tls import CertificateConfig, TlsConfig, parse_tls

__all__ = [
    "ActiveCheck",
    "AdminConfig",
    "AltSvcConfig",
    "CertificateConfig",
    "Config",
    "ConfigError",
    "ForwardingConfig",
    "HeaderRules",
    "LimitsConfig",
    "ListenConfig",
    "PassiveCheck",
    "QuicConfig",
    "RouteConfig",
    "ServerConfig",
    "TlsConfig",
    "UpstreamConfig",
    "load_config",
    "parse_address",
    "parse_upstream_url",
]


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """One listening address: TCP (TLS or cleartext) and, with ``quic``, UDP on the same port."""

    host: str
    port: int
    tls: bool = True
    quic: bool = True
    proxy_protocol_from: tuple[IPNetwork, ...] = ()  # non-empty: TCP needs a PROXY header
    h2c: bool = False  # cleartext listeners: HTTP/2 prior knowledge too (the file: on by default)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Process-level settings (a TOML file's default for ``workers`` is one per core)."""

    workers: int = 1
    grace_period: float = 10.0
    log_level: str = "info"
    access_log: bool = True
    access_log_format: str = "text"  # "text" (one line per request) or "json" (JSON lines)
    pid_file: Path | None = None  # the main process writes its PID here (`quicproxy reload`)


@dataclass(frozen=True, slots=True)
class AltSvcConfig:
    """HTTP/3 advertisement on TCP responses."""

    enabled: bool = True
    max_age: int = 86400


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin listener (cleartext HTTP/1.1: metrics, health probe, status page, drain)."""

    host: str = "127.0.0.1"
    port: int = 9901  # 0: any free port (printed at start)


@dataclass(frozen=True, slots=True)
class ForwardingConfig:
    """Forwarding headers and which peers may set them."""

    trusted_proxies: tuple[IPNetwork, ...] = ()
    via: str | None = "quicproxy"
    x_forwarded: bool = True
    forwarded: bool = True


@dataclass(frozen=True, slots=True)
class LimitsConfig(ConnectionLimits):
    """Downstream limits: sizes, timeouts and flood budgets (see README "[limits]"). The sizes
    and budgets the adapters take are ``ConnectionLimits``'s fields (and defaults); this adds
    what only the I/O layer reads."""

    idle_timeout: float = 75.0  # keep-alive: a connection with no request in flight
    write_timeout: float = 60.0
    header_timeout: float = 10.0  # the whole request head, however slowly it trickles (408)
    client_body_timeout: float = 15.0  # between request body bytes (408)
    request_timeout: float = 0.0  # the whole request, head and body; 0 = no limit (408)
    max_body_size: int = 1 << 30  # request body bytes; beyond it 413; 0 = no limit
    normalize_path: bool = True  # remove dot-segments (RFC 3986 5.2.4); above the root: 400
    quic_max_datagram_size: int = 1350


@dataclass(frozen=True, slots=True)
class ActiveCheck:
    """An active check: ``kind`` tcp (connect) or http (GET ``path`` over the peer's protocol)."""

    kind: str = "http"
    path: str = "/"
    host: str | None = None
    interval: float = 5.0
    timeout: float = 2.0
    expected_status: tuple[int, int] = (200, 399)
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3


@dataclass(frozen=True, slots=True)
class PassiveCheck:
    """Passive ejection: ``max_fails`` failures (or slow responses) within ``fail_window``
    seconds take a backend out for ``fail_duration`` seconds."""

    max_fails: int = 3
    fail_window: float = 10.0
    fail_duration: float = 30.0
    slow_threshold: float = 0.0  # seconds; 0 disables counting slow responses as failures


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """A named group of origin addresses, tried in round robin."""

    name: str
    addresses: tuple[tuple[str, int], ...]
    tls: bool = False
    protocol: str = "auto"
    sni: str | None = None
    verify: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    connect_timeout: float = 5.0
    tls_handshake_timeout: float = 10.0
    total_timeout: float = 0.0
    read_timeout: float = 60.0
    write_timeout: float = 60.0
    idle_timeout: float = 60.0
    max_retries: int = 2
    try_duration: float = 10.0
    max_connections: int = 0
    max_requests: int = 0
    max_idle: int = 64
    weights: tuple[int, ...] = ()
    lb: str = "round_robin"
    hash_key: str | None = None
    resolve_interval: float = 0.0
    health_check: ActiveCheck | None = None
    passive_health: PassiveCheck | None = None


@dataclass(frozen=True, slots=True)
class HeaderRules:
    """Fields to set (replace) and remove."""

    set: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """Requests whose host and path prefix match go to ``upstream``, or are answered from the
    files under ``static`` (then ``upstream`` is empty)."""

    upstream: str
    host: str | None = None
    path_prefix: str = "/"
    request_headers: HeaderRules = HeaderRules()
    response_headers: HeaderRules = HeaderRules()
    static: Path | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration."""

    listen: tuple[ListenConfig, ...]
    upstreams: tuple[UpstreamConfig, ...]
    routes: tuple[RouteConfig, ...]
    server: ServerConfig = ServerConfig()
    tls: TlsConfig = field(default_factory=TlsConfig)
    alt_svc: AltSvcConfig = AltSvcConfig()
    forwarding: ForwardingConfig = ForwardingConfig()
    limits: LimitsConfig = LimitsConfig()
    quic: QuicConfig = field(default_factory=QuicConfig)
    source: str = "<built-in>"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    admin: AdminConfig | None = None  # None: no admin listener (no [admin] table)


def _headers(table: Table, key: str) -> HeaderRules:
    rules = table.sub(key)
    raw_set = rules.get("set", dict, {})
    pairs = []
    for name, value in raw_set.items():
        if not isinstance(value, str):
            raise rules.error(f"set.{name}", "expected a string")
        pairs.append((name.lower(), value))
    removed = tuple(name.lower() for name in rules.strings("remove"))
    rules.finish()
    return HeaderRules(tuple(pairs), removed)


def _listen(table: Table) -> ListenConfig:
    address = table.get("address", str, None)
    if address is None:
        raise table.error("address", "is required (HOST:PORT)")
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        raise table.error("address", str(exc)) from None
    tls = table.get("tls", bool, True)
    quic = table.get("quic", bool, tls)
    if quic and not tls:
        raise table.error("quic", "QUIC needs TLS; set tls = true or quic = false")
    proxy_protocol = table.get("proxy_protocol", bool, False)
    trusted = _networks(table, "proxy_protocol_from")
    if proxy_protocol and not trusted:
        raise table.error(
            "proxy_protocol_from", "list the load balancers' networks that send PROXY headers"
        )
    if trusted and not proxy_protocol:
        raise table.error("proxy_protocol_from", "only with proxy_protocol = true")
    h2c = table.get("h2c", bool, not tls)
    if h2c and tls:
        raise table.error(
            "h2c", "is for cleartext listeners (tls = false); TLS ones offer h2 by ALPN"
        )
    table.finish()
    return ListenConfig(host, port, tls, quic, trusted, h2c)


def _upstream(table: Table, base: Path) -> UpstreamConfig:
    name = table.get("name", str, None)
    if not name:
        raise table.error("name", "is required")
    addresses = []
    tls_seen: set[bool] = set()
    for index, text in enumerate(table.strings("addresses")):
        try:
            host, port, tls = parse_upstream_url(text)
        except ValueError as exc:
            raise table.error(f"addresses[{index}]", str(exc)) from None
        addresses.append((host, port))
        if "://" in text:
            tls_seen.add(tls)
    if not addresses:
        raise table.error("addresses", "needs at least one address")
    if len(tls_seen) > 1:
        raise table.error("addresses", "mixes http:// and https://; use two upstreams")
    tls = table.get("tls", bool, tls_seen.pop() if tls_seen else False)
    for key in ("ca_file", "client_cert", "client_key"):
        path = table_path(table, key, base)
        if path is not None and not path.is_file():
            raise table.error(key, f"file not found: {path}")
    config = UpstreamConfig(
        name=name,
        addresses=tuple(addresses),
        tls=tls,
        protocol=_protocol(table, tls),
        sni=table.get("sni", str, None),
        verify=table.get("verify", bool, True),
        ca_file=table_path(table, "ca_file", base),
        client_cert=table_path(table, "client_cert", base),
        client_key=table_path(table, "client_key", base),
        connect_timeout=table.number("connect_timeout", 5.0, minimum=0.001),
        tls_handshake_timeout=table.number("tls_handshake_timeout", 10.0, minimum=0.001),
        total_timeout=table.number("total_timeout", 0.0),
        read_timeout=table.number("read_timeout", 60.0, minimum=0.001),
        write_timeout=table.number("write_timeout", 60.0, minimum=0.001),
        idle_timeout=table.number("idle_timeout", 60.0, minimum=0.001),
        max_retries=table.integer("max_retries", 2, maximum=10),
        try_duration=table.number("try_duration", 10.0, minimum=0.001),
        max_connections=table.integer("max_connections", 0),
        max_requests=table.integer("max_requests", 0),
        max_idle=table.integer("max_idle", 64, maximum=100000),
        weights=_weights(table, len(addresses)),
        lb=_lb_name(table),
        hash_key=_hash_key(table),
        resolve_interval=table.number("resolve_interval", 0.0),
        health_check=_active_check(table),
        passive_health=_passive_check(table),
    )
    table.finish()
    return config


LB_NAMES = (
    "round_robin",
    "weighted_round_robin",
    "random",
    "least_connections",
    "power_of_two",
    "ketama",
)


def _lb_name(table: Table) -> str:
    name: str = table.get("lb", str, "round_robin")
    if name not in LB_NAMES:
        raise table.error("lb", f"must be one of {', '.join(LB_NAMES)}")
    return name


def _hash_key(table: Table) -> str | None:
    text: str | None = table.get("hash_key", str, None)
    if text is None:
        return None
    source, _, name = text.partition(":")
    if source in ("client_ip", "path") and not name:
        return text
    if source == "header" and name:
        return f"header:{name.lower()}"
    if source == "cookie" and name:
        return text  # cookie names are case-sensitive
    raise table.error("hash_key", "must be client_ip, path, header:NAME or cookie:NAME")


def _weights(table: Table, count: int) -> tuple[int, ...]:
    weights = table.get("weights", list, [])
    if not weights:
        return ()
    if len(weights) != count:
        raise table.error("weights", f"needs one weight per address ({count})")
    for index, weight in enumerate(weights):
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 1000:
            raise table.error(f"weights[{index}]", "must be an integer from 1 to 1000")
    return tuple(weights)


def _active_check(parent: Table) -> ActiveCheck | None:
    if "health_check" not in parent.data:
        parent.seen.add("health_check")
        return None
    table = parent.sub("health_check")
    kind = table.get("kind", str, "http")
    if kind not in ("http", "tcp"):
        raise table.error("kind", "must be http or tcp")
    expected = table.get("expected_status", list, [200, 399])
    if len(expected) != 2 or not all(isinstance(v, int) and 100 <= v <= 599 for v in expected):
        raise table.error("expected_status", "must be [LOW, HIGH] statuses, e.g. [200, 399]")
    path = table.get("path", str, "/")
    if not path.startswith("/"):
        raise table.error("path", "must start with /")
    check = ActiveCheck(
        kind=kind,
        path=path,
        host=table.get("host", str, None),
        interval=table.number("interval", 5.0, minimum=0.05),
        timeout=table.number("timeout", 2.0, minimum=0.01),
        expected_status=(expected[0], expected[1]),
        healthy_threshold=table.integer("healthy_threshold", 2, minimum=1, maximum=100),
        unhealthy_threshold=table.integer("unhealthy_threshold", 3, minimum=1, maximum=100),
    )
    table.finish()
    return check


def _passive_check(parent: Table) -> PassiveCheck | None:
    if "passive_health" not in parent.data:
        parent.seen.add("passive_health")
        return None
    table = parent.sub("passive_health")
    check = PassiveCheck(
        max_fails=table.integer("max_fails", 3, minimum=1, maximum=10000),
        fail_window=table.number("fail_window", 10.0, minimum=0.01),
        fail_duration=table.number("fail_duration", 30.0, minimum=0.01),
        slow_threshold=table.number("slow_threshold", 0.0),
    )
    table.finish()
    return check


_PROTOCOLS = ("auto", "h1", "h2", "h3")


def _protocol(table: Table, tls: bool) -> str:
    protocol: str = table.get("protocol", str, "auto")
    if protocol not in _PROTOCOLS:
        raise table.error("protocol", f"must be one of {', '.join(_PROTOCOLS)}")
    if protocol == "h3" and not tls:
        raise table.error("protocol", "h3 needs TLS: use https:// addresses or tls = true")
    return protocol


def _route(table: Table, upstream_names: set[str], base: Path) -> RouteConfig:
    upstream = table.get("upstream", str, None)
    static = table_path(table, "static", base)
    if upstream is None and static is None:
        raise table.error("upstream", "is required (or static = DIRECTORY)")
    if upstream is not None and static is not None:
        raise table.error("static", "a route has an upstream or a static directory, not both")
    if static is not None and not static.is_dir():
        raise table.error("static", f"not a directory: {static}")
    if upstream is not None and upstream not in upstream_names:
        known = ", ".join(sorted(upstream_names)) or "none defined"
        raise table.error("upstream", f"no upstream named {upstream!r} (known: {known})")
    prefix = table.get("path_prefix", str, "/")
    if not prefix.startswith("/"):
        raise table.error("path_prefix", "must start with /")
    host = table.get("host", str, None)
    route = RouteConfig(
        upstream=upstream or "",
        host=host.lower() if host else None,
        path_prefix=prefix,
        request_headers=_headers(table, "request_headers"),
        response_headers=_headers(table, "response_headers"),
        static=static,
    )
    table.finish()
    return route


def _admin(root: Table) -> AdminConfig | None:
    """``[admin]``: absent means off; ``address`` defaults to 127.0.0.1:9901."""
    present = "admin" in root.data
    table = root.sub("admin")
    if not present:
        return None
    try:
        host, port = parse_address(table.get("address", str, "127.0.0.1:9901"), "127.0.0.1")
    except ValueError as exc:
        raise table.error("address", str(exc)) from None
    table.finish()
    return AdminConfig(host, port)


def _networks(table: Table, key: str) -> tuple[IPNetwork, ...]:
    networks = []
    for index, text in enumerate(table.strings(key)):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise table.error(f"{key}[{index}]", str(exc)) from None
    return tuple(networks)


ACCESS_LOG_FORMATS = ("text", "json")


def parse_config(data: dict[str, Any], source: str, base: Path) -> Config:
    """Validate parsed TOML; ``base`` resolves relative paths."""
    root = Table(data, "", source)
    server_table = root.sub("server")
    workers = server_table.get("workers", (int, str), "auto")
    if workers == "auto":
        workers = os.cpu_count() or 1
    if not isinstance(workers, int) or not 1 <= workers <= 256:
        raise server_table.error("workers", 'must be an integer from 1 to 256, or "auto"')
    log_level = server_table.get("log_level", str, "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise server_table.error("log_level", "must be debug, info, warning or error")
    server = ServerConfig(
        workers=workers,
        grace_period=server_table.number("grace_period", 10.0),
        log_level=log_level,
        access_log=server_table.get("access_log", bool, True),
        access_log_format=server_table.get("access_log_format", str, "text"),
        pid_file=table_path(server_table, "pid_file", base),
    )
    if server.access_log_format not in ACCESS_LOG_FORMATS:
        raise server_table.error("access_log_format", 'must be "text" or "json"')
    server_table.finish()

    tls = parse_tls(root.sub("tls"), base)

    alt_table = root.sub("alt_svc")
    alt_svc = AltSvcConfig(
        enabled=alt_table.get("enabled", bool, True),
        max_age=alt_table.integer("max_age", 86400),
    )
    alt_table.finish()

    fwd = root.sub("forwarding")
    via = fwd.get("via", (str, bool), "quicproxy")
    if via is True:
        via = "quicproxy"
    forwarding = ForwardingConfig(
        trusted_proxies=_networks(fwd, "trusted_proxies"),
        via=via or None,
        x_forwarded=fwd.get("x_forwarded", bool, True),
        forwarded=fwd.get("forwarded", bool, True),
    )
    fwd.finish()

    lim = root.sub("limits")
    defaults = DEFAULT_LIMITS
    limits = LimitsConfig(
        idle_timeout=lim.number("idle_timeout", 75.0, minimum=0.1),
        write_timeout=lim.number("write_timeout", 60.0, minimum=0.1),
        header_timeout=lim.number("header_timeout", 10.0, minimum=0.1),
        client_body_timeout=lim.number("client_body_timeout", 15.0, minimum=0.1),
        request_timeout=lim.number("request_timeout", 0.0),
        max_concurrent_streams=lim.integer(
            "max_concurrent_streams", defaults.max_concurrent_streams, minimum=1, maximum=1000
        ),
        stream_buffer=lim.integer(
            "stream_buffer", defaults.stream_buffer, minimum=16384, maximum=2**26
        ),
        max_request_line=lim.integer(
            "max_request_line", defaults.max_request_line, minimum=256, maximum=2**20
        ),
        max_header_size=lim.integer(
            "max_header_size", defaults.max_header_size, minimum=4096, maximum=2**20
        ),
        max_header_count=lim.integer(
            "max_header_count", defaults.max_header_count, minimum=8, maximum=10000
        ),
        max_body_size=lim.integer("max_body_size", 1 << 30),
        max_requests_per_connection=lim.integer(
            "max_requests_per_connection", defaults.max_requests_per_connection
        ),
        max_premature_resets=lim.integer(
            "max_premature_resets", defaults.max_premature_resets, minimum=1
        ),
        max_control_frames=lim.integer(
            "max_control_frames", defaults.max_control_frames, minimum=10
        ),
        normalize_path=lim.get("normalize_path", bool, True),
        quic_max_datagram_size=lim.integer(
            "quic_max_datagram_size", 1350, minimum=1200, maximum=1452
        ),
    )
    lim.finish()

    quic = parse_quic(root.sub("quic"), base)

    listen = tuple(_listen(t) for t in root.subs("listen"))
    if not listen:
        raise root.error("listen", "needs at least one [[listen]] table")
    if server.workers > 1 and any(item.port == 0 for item in listen):
        if "workers" in server_table.data:
            raise server_table.error("workers", "port 0 (any free port) needs workers = 1")
        server = replace(server, workers=1)
    upstreams = tuple(_upstream(t, base) for t in root.subs("upstream"))
    names = [u.name for u in upstreams]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise root.error("upstream", f"duplicate name {sorted(duplicates)[0]!r}")
    routes = tuple(_route(t, set(names), base) for t in root.subs("route"))
    if not routes:
        raise root.error("route", "needs at least one [[route]] table")
    admin = _admin(root)
    root.finish()
    config = Config(listen, upstreams, routes, server, tls, alt_svc, forwarding, limits, quic)
    return replace(config, source=source, admin=admin)


def load_config(path: Path) -> Config:
    """Read and validate a TOML file; ConfigError names the file, the key and the reason."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data, str(path), path.parent)
