"""LoadBalancer: one upstream group's backends, selection, health checks and discovery."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import replace

from ..errors import ErrorKind, ProxyError
from ..session import Session
from ..upstream.connector import Connector
from ..upstream.peer import HttpPeer
from .backends import Backend, BackendSet
from .health import ActiveCheck, HealthChecker, PassiveCheck, PassiveHealth
from .selection import Selector, hash_key_value

__all__ = ["LoadBalancer"]

log = logging.getLogger("quicproxy.lb")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class LoadBalancer:
    """Picks a backend for each try of a request, skipping unhealthy, ejected, drained and
    already-tried ones; with none left, 503 with ``retry-after``."""

    def __init__(
        self,
        name: str,
        peers: Sequence[HttpPeer],
        selector: Selector,
        *,
        hash_key: str | None = None,
        active: ActiveCheck | None = None,
        passive: PassiveCheck | None = None,
        weights: Sequence[int] | None = None,
        resolve_interval: float = 0.0,
        connector: Connector | None = None,
    ) -> None:
        self.name = name
        self.configured = list(peers)
        self.weights = list(weights) if weights else [1] * len(self.configured)
        self.backends = BackendSet(
            [
                Backend(peer, w, self.report)
                for peer, w in zip(self.configured, self.weights, strict=True)
            ],
            on_outcome=self.report,
        )
        self.selector = selector
        self.hash_key = hash_key
        self.active = active
        self.passive = PassiveHealth(name, passive) if passive else None
        self.resolve_interval = resolve_interval
        self.connector = connector
        # per configured entry, the peers of its last good lookup (at first: the entry itself)
        self._resolved: list[list[HttpPeer]] = [[peer] for peer in self.configured]
        self._checker: HealthChecker | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def select(
        self,
        client_ip: str,
        headers: list[tuple[bytes, bytes]],
        path: str,
        exclude: set[str] | None = None,
    ) -> Backend:
        """The backend for one try; ``exclude`` holds keys of backends already tried."""
        candidates = self.backends.available(time.monotonic())
        if exclude:
            untried = [b for b in candidates if b.key not in exclude]
            candidates = untried or candidates
        key = hash_key_value(self.hash_key, client_ip, headers, path) if self.hash_key else None
        backend = self.selector.select(candidates, key)
        if backend is None:
            raise ProxyError.upstream(
                ErrorKind.NO_UPSTREAM, f"no healthy backend in {self.name!r}", retry=False
            )
        return backend

    def pick(self, session: Session) -> HttpPeer:
        """The peer for this try of ``session``'s request: ``select`` with the client's address,
        headers and path, skipping the backends its earlier tries went to. The pipeline counts
        the try on the backend and reports its outcome."""
        request = session.request
        tried = set(session.upstream_tries)
        client_ip = session.downstream.client_address[0]
        return self.select(client_ip, request.headers, request.path, tried).peer

    def report(self, backend: Backend, ok: bool, duration: float) -> None:
        """One request's outcome, for passive health."""
        if self.passive is not None:
            self.passive.record(backend, ok, duration)

    def drain(self, address: str, draining: bool = True) -> None:
        """Take a backend out of (or back into) rotation by hand; in-flight requests finish."""
        backend = self.backends.get(address)
        if backend is None:
            raise KeyError(address)
        backend.draining = draining
        log.warning("lb: %s in %r %s", address, self.name, "drained" if draining else "undrained")

    def start(self) -> None:
        """Start health checks and, for host names, re-resolution."""
        loop = asyncio.get_running_loop()
        if self.active is not None:
            self._checker = HealthChecker(
                self.name, list(self.backends), self.active, self.connector
            )
            self._checker.start()
        if self.resolve_interval > 0 and not all(_is_ip(p.host) for p in self.configured):
            self._tasks.append(loop.create_task(self._resolve_forever()))

    async def stop(self) -> None:
        """Stop background work."""
        if self._checker is not None:
            await self._checker.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _resolve_forever(self) -> None:
        while True:
            await self.resolve()
            await asyncio.sleep(self.resolve_interval)

    async def resolve(self) -> None:
        """Re-resolve host names (A and AAAA) and apply the changes; in-flight requests keep
        the peer they started with. A failed (or empty) lookup keeps the addresses that name
        had before: those of its last good lookup, or the name itself if it never resolved."""
        peers: list[HttpPeer] = []
        weights: list[int] = []
        for index, (peer, weight) in enumerate(zip(self.configured, self.weights, strict=True)):
            if _is_ip(peer.host):
                resolved = [peer]
            elif addresses := await self._lookup(peer):
                sni = peer.sni or peer.host
                resolved = [replace(peer, host=address, sni=sni) for address in addresses]
                self._resolved[index] = resolved
            else:
                resolved = self._resolved[index]
            peers.extend(resolved)
            weights.extend([weight] * len(resolved))
        if self.backends.replace(peers, weights):
            log.info("lb: %r now has %s", self.name, ", ".join(p.address for p in peers))
            if self._checker is not None:
                self._checker.targets = list(self.backends)

    async def _lookup(self, peer: HttpPeer) -> list[str]:
        """The addresses of ``peer.host``, sorted; none (and a log line) when the lookup fails."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(peer.host, peer.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("lb: cannot resolve %s for %r: %s", peer.host, self.name, exc)
            return []
        if not infos:
            log.warning("lb: %s for %r resolved to no address", peer.host, self.name)
        return sorted({str(info[4][0]) for info in infos})
