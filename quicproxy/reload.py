"""Reload without a restart: SIGHUP re-reads the config, certificate files are watched.

The main process validates the file first (a broken one is logged and the old config keeps
serving) and then passes SIGHUP to its workers; each worker reads the file again and swaps, for
new requests and handshakes, the built-in proxy (routes, upstreams, balancers and their health
checks, header rules, retries), the forwarding policy, Alt-Svc and the certificates. Requests
in flight finish with what they started with; no listener is closed, so no connection is
refused and QUIC connections go on. What only a restart can change (listeners, workers,
limits, [quic], [admin]) is left as it was and named in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from .config import Config, ConfigError
from .devcerts import default_cert_dir, ensure_dev_certs
from .net.certs import ALPN, CertificateError, CertificateFiles, CertificateStore

if TYPE_CHECKING:
    from .config_tls import TlsConfig
    from .server import ProxyServer

__all__ = ["ConfigSource", "Reloader", "load_certificates", "restart_needed"]

log = logging.getLogger("quicproxy.reload")

RESTART_ONLY = ("listen", "limits", "quic", "admin")
"""Config sections a reload does not apply (``server.workers`` and ``server.pid_file`` too)."""


def load_certificates(tls: TlsConfig) -> CertificateStore:
    """The default certificate (the development one when none is configured) and the others;
    CertificateError when one cannot be used."""
    if tls.cert is not None and tls.key is not None:
        default = CertificateFiles(tls.cert, tls.key)
    else:
        dev = ensure_dev_certs(tls.dev_cert_dir or default_cert_dir())
        default = CertificateFiles(dev.cert, dev.key)
    others = [CertificateFiles(c.cert, c.key, c.names) for c in tls.certificates]
    return CertificateStore.load(default, others, ALPN)


def restart_needed(old: Config, new: Config) -> list[str]:
    """The settings that differ between ``old`` and ``new`` which only a restart applies."""
    changed = [name for name in RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    for name in ("workers", "pid_file"):
        if getattr(old.server, name) != getattr(new.server, name):
            changed.append(f"server.{name}")
    return changed


class ConfigSource:
    """Where a running proxy's config comes from: ``load`` reads and validates it again."""

    def __init__(self, load: Callable[[], Config], current: Config) -> None:
        self.load = load
        self.current = current

    def refresh(self) -> Config | None:
        """Read the config again; None (logged, ``current`` kept) when it is broken."""
        try:
            self.current = self.load()
        except (ConfigError, OSError) as exc:
            log.error("reload refused, the running config stays: %s", exc)
            return None
        return self.current


def _mtimes(server: ProxyServer) -> dict[str, float]:
    assert server.certificates is not None
    found: dict[str, float] = {}
    for path in server.certificates.store.files():
        with contextlib.suppress(OSError):
            found[str(path)] = os.stat(path).st_mtime
    return found


class Reloader:
    """A worker's side of reloading: on SIGHUP, the config; when their files change, the
    certificates (checked every ``[tls] watch_interval`` seconds)."""

    def __init__(self, server: ProxyServer, source: ConfigSource | None) -> None:
        self.server = server
        self.source = source
        self.reloads = 0  # reloads applied
        self._lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching the certificate files."""
        if self.server.config.tls.watch_interval > 0:
            self._watch = asyncio.get_running_loop().create_task(self._watch_files())

    def stop(self) -> None:
        """Stop watching."""
        if self._watch is not None:
            self._watch.cancel()

    def on_sighup(self) -> None:
        """Reload in a task (the signal handler must not block)."""
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Re-read the config (or, without a config file, the certificates) and apply it."""
        async with self._lock:
            config = self.source.refresh() if self.source is not None else self.server.config
            if config is None:
                return False
            try:
                pending = await self.server.reload(config)
            except CertificateError as exc:
                log.error("reload refused, the running config stays: %s", exc)
                return False
            self.reloads += 1
            for name in pending:
                log.warning("reload: %s changed; it applies only after a restart", name)
            log.info("reloaded %s", config.source)
            return True

    async def _watch_files(self) -> None:
        seen = _mtimes(self.server)
        while True:
            await asyncio.sleep(self.server.config.tls.watch_interval)
            now = _mtimes(self.server)
            if now == seen:
                continue
            seen = now
            async with self._lock:
                try:
                    self.server.use_certificates(load_certificates(self.server.config.tls))
                except CertificateError as exc:  # e.g. the key is written after the cert
                    log.error("certificate files changed but cannot be used yet: %s", exc)
                    continue
            log.info("certificate files changed: new handshakes use them")
