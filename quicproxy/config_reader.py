"""The TOML reading toolkit: typed table access that names keys in errors, and address parsing."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ConfigError",
    "IPNetwork",
    "Table",
    "parse_address",
    "parse_upstream_url",
    "table_path",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
"""A trusted-proxy or source network, as config holds it."""


class ConfigError(ValueError):
    """A configuration problem, naming the file, the key and the reason."""


def parse_address(text: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` into (host, port); ValueError when malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} has no port (expected HOST:PORT)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: put IPv6 addresses in brackets, as [::1]:443")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r} has an invalid port")
    return (host or default_host, int(port_text))


def _upstream_port(port: int, text: str) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r} has an invalid port")
    return port


def parse_upstream_url(text: str) -> tuple[str, int, bool]:
    """``http://host:port``, ``https://host[:port]`` or ``host:port`` -> host, port, tls."""
    if "://" not in text:
        host, port = parse_address(text, default_host="127.0.0.1")
        return host, _upstream_port(port, text), False
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{text!r}: scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"{text!r} has no host")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{text!r}: upstream URLs take no path or query")
    tls = parts.scheme == "https"
    try:
        explicit = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    port = (443 if tls else 80) if explicit is None else explicit
    return parts.hostname, _upstream_port(port, text), tls


class Table:
    """Typed access to one TOML table that remembers which keys were read."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {where}: expected a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.where = where
        self.source = source
        self.seen: set[str] = set()

    def error(self, key: str, reason: str) -> ConfigError:
        name = f"{self.where}.{key}" if self.where else key
        return ConfigError(f"{self.source}: {name}: {reason}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.seen.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        bool_ok = kind is bool or (isinstance(kind, tuple) and bool in kind)
        if isinstance(value, bool) and not bool_ok:
            raise self.error(key, f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = float(self.get(key, (int, float), default))
        if value < minimum:
            raise self.error(key, f"must be at least {minimum:g}")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0, maximum: int = 2**62) -> int:
        value: int = self.get(key, int, default)
        if not minimum <= value <= maximum:
            raise self.error(key, f"must be between {minimum} and {maximum}")
        return value

    def strings(self, key: str) -> list[str]:
        values = self.get(key, list, [])
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise self.error(f"{key}[{index}]", "expected a string")
        return list(values)

    def sub(self, key: str) -> Table:
        self.seen.add(key)
        where = f"{self.where}.{key}" if self.where else key
        return Table(self.data.get(key, {}), where, self.source)

    def subs(self, key: str) -> list[Table]:
        self.seen.add(key)
        items = self.data.get(key, [])
        if not isinstance(items, list):
            raise self.error(key, f"expected an array of tables ([[{key}]])")
        return [Table(item, f"{key}[{i}]", self.source) for i, item in enumerate(items)]

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}
    names.update({list: "an array", dict: "a table"})
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def table_path(table: Table, key: str, base: Path) -> Path | None:
    value = table.get(key, str, None)
    if value is None:
        return None
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path
