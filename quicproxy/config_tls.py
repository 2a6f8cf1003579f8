"""The ``[tls]`` configuration table: the default certificate, more chosen by SNI, file watching."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config_reader import Table, table_path

__all__ = ["CertificateConfig", "TlsConfig", "parse_tls"]


@dataclass(frozen=True, slots=True)
class CertificateConfig:
    """One more certificate, served to clients whose SNI matches ``names`` (``*.`` wildcards
    allowed); empty ``names``: the DNS names in the certificate itself."""

    cert: Path
    key: Path
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The default certificate (None paths: generate development certificates), the
    certificates chosen by SNI, and how often certificate files are checked for changes."""

    cert: Path | None = None
    key: Path | None = None
    dev_cert_dir: Path | None = None
    certificates: tuple[CertificateConfig, ...] = ()
    watch_interval: float = 5.0  # seconds between checks of the files' mtimes; 0 = never


def _existing(table: Table, key: str, path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise table.error(key, f"file not found: {path}")
    return path


def _certificate(table: Table, base: Path) -> CertificateConfig:
    cert = _existing(table, "cert", table_path(table, "cert", base))
    key = _existing(table, "key", table_path(table, "key", base))
    if cert is None or key is None:
        raise table.error("cert" if cert is None else "key", "each certificate needs cert and key")
    names = tuple(name.lower().rstrip(".") for name in table.strings("names"))
    for index, name in enumerate(names):
        if not name or " " in name or "*" in name[1:] or (name[0] == "*" and name[:2] != "*."):
            raise table.error(f"names[{index}]", f"{name!r} is not a host name or *.domain")
    table.finish()
    return CertificateConfig(cert, key, names)


def parse_tls(table: Table, base: Path) -> TlsConfig:
    """Validate ``[tls]``; relative paths are resolved against ``base``."""
    cert = table_path(table, "cert", base)
    key = table_path(table, "key", base)
    if (cert is None) != (key is None):
        raise table.error("cert" if cert is None else "key", "cert and key go together")
    cert, key = _existing(table, "cert", cert), _existing(table, "key", key)
    tls = TlsConfig(
        cert=cert,
        key=key,
        dev_cert_dir=table_path(table, "dev_cert_dir", base),
        certificates=tuple(_certificate(sub, base) for sub in table.subs("certificates")),
        watch_interval=table.number("watch_interval", 5.0),
    )
    table.finish()
    return tls
