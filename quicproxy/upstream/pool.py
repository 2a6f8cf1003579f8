"""UpstreamPool: per-protocol connection reuse keyed by the peer key.

HTTP/1.1 connections are exclusive: an idle list per key (most recently used first, idle timeout,
at most the peer's ``max_idle``). HTTP/2 (and HTTP/3) connections are shared while they have stream
capacity; a second one is opened when all are full, and one that got GOAWAY takes no new streams.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import replace

from ..errors import ErrorKind, ProxyError
from .altsvc_cache import AltSvcCache
from .connection import PooledConnection
from .connector import Connector
from .peer import HttpPeer, PeerKey

__all__ = ["PooledConnection", "UpstreamPool"]

log = logging.getLogger("quicproxy.upstream")

H3_ATTEMPT_TIMEOUT = 2.0  # an advertised HTTP/3 that does not answer by then falls back to TCP
_FALLBACK_KINDS = frozenset(
    {ErrorKind.CONNECT_TIMEOUT, ErrorKind.CONNECT_REFUSED, ErrorKind.TLS_HANDSHAKE}
)


class UpstreamPool:
    """Hands out connections: a shared or idle one of the same peer key if any, else a new one."""

    def __init__(self, connector: Connector | None = None) -> None:
        self.connector = connector or Connector()
        self._idle: dict[PeerKey, collections.deque[PooledConnection]] = {}
        self._shared: dict[PeerKey, list[PooledConnection]] = {}
        self._dialing: dict[PeerKey, asyncio.Future[None]] = {}
        self._multiplexed: dict[PeerKey, bool] = {}  # learned from the first connection
        self._live: dict[PeerKey, set[PooledConnection]] = {}
        self._in_flight: collections.Counter[PeerKey] = collections.Counter()
        self._leases: dict[PooledConnection, list[PeerKey]] = {}  # acquired, not yet released
        self.connections_opened = 0
        self.acquisitions = [0, 0]  # handed out [new, reused] (read by quicproxy.metrics)
        self.alt_svc = AltSvcCache()

    @property
    def open_count(self) -> int:
        """Upstream connections open now, idle or in use."""
        return sum(len(conns) for conns in self._live.values())

    @property
    def idle_count(self) -> int:
        """HTTP/1.1 connections waiting for reuse."""
        return sum(len(conns) for conns in self._idle.values())

    async def acquire(self, peer: HttpPeer) -> tuple[PooledConnection, bool]:
        """A connection to ``peer`` with room for one more request, and whether it was used
        before (the retry rule treats failures on reused connections differently).

        Beyond ``peer.max_requests`` in flight, or when a new connection would exceed
        ``peer.max_connections``, fails at once with OVERLOADED (503, retryable elsewhere):
        requests never queue without bound. An ``auto`` TLS peer that advertised HTTP/3 with
        Alt-Svc is reached over HTTP/3; when that fails, over TCP, and HTTP/3 rests a while.
        """
        key = peer.key()
        if peer.max_requests and self._in_flight[key] >= peer.max_requests:
            raise self._overloaded(peer, f"{self._in_flight[key]} requests in flight")
        # A request counts against the peer it was asked for, whatever protocol carries it: a
        # switch to HTTP/3 (another peer key) must not lift max_requests.
        self._in_flight[key] += 1
        try:
            conn, reused = await self._acquire_for(key, peer)
        except BaseException:
            self._in_flight[key] -= 1
            raise
        self._leases.setdefault(conn, []).append(key)
        self.acquisitions[reused] += 1
        return conn, reused

    async def _acquire_for(self, key: PeerKey, peer: HttpPeer) -> tuple[PooledConnection, bool]:
        target = self._alternative(peer)
        if target is not None:
            try:
                return await self._acquire(target.key(), target)
            except ProxyError as exc:
                if exc.kind not in _FALLBACK_KINDS:
                    raise
                self.alt_svc.mark_broken(peer, asyncio.get_running_loop().time())
                log.warning("HTTP/3 to %s failed (%s); using TCP for a while", peer.address, exc)
        return await self._acquire(key, peer)

    def _alternative(self, peer: HttpPeer) -> HttpPeer | None:
        if peer.protocol != "auto" or not peer.tls:
            return None
        port = self.alt_svc.lookup(peer, asyncio.get_running_loop().time())
        if port is None:
            return None
        quick = replace(peer.timeouts, connect=min(peer.timeouts.connect, H3_ATTEMPT_TIMEOUT))
        return replace(peer, protocol="h3", port=port, timeouts=quick)

    def observe_alt_svc(self, peer: HttpPeer, values: list[str]) -> None:
        """Learn from an upstream response's Alt-Svc fields (for ``auto`` TLS peers)."""
        if peer.protocol == "auto" and peer.tls and values:
            self.alt_svc.observe(peer, values, asyncio.get_running_loop().time())

    async def _acquire(self, key: PeerKey, peer: HttpPeer) -> tuple[PooledConnection, bool]:
        for _ in range(3):
            shared = self._pick_shared(key)
            if shared is not None:
                return shared, shared.requests > 0
            dialing = self._dialing.get(key)
            if dialing is None or not self._multiplexed.get(key, True):
                break
            # One dial per multiplexed (or not yet known) key at a time: a burst of requests to
            # a cold HTTP/2 upstream shares the first connection instead of opening one each.
            await asyncio.shield(dialing)
        idle = self._pick_idle(key, peer)
        if idle is not None:
            return idle, True
        live = len(self._live.get(key, ()))
        if peer.max_connections and live >= peer.max_connections:
            raise self._overloaded(peer, f"{live} connections open")
        return await self._dial(key, peer), False

    @staticmethod
    def _overloaded(peer: HttpPeer, why: str) -> ProxyError:
        return ProxyError.upstream(ErrorKind.OVERLOADED, f"{peer.address} at its limit: {why}")

    def _pick_shared(self, key: PeerKey) -> PooledConnection | None:
        for conn in self._shared.get(key, ()):
            if conn.reusable:
                return conn
        return None

    def _pick_idle(self, key: PeerKey, peer: HttpPeer) -> PooledConnection | None:
        idle = self._idle.get(key)
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()  # most recently used first: the warmest connection
            if conn.reusable and now - conn.last_activity < peer.timeouts.idle:
                return conn
            conn.close_transport()
        return None

    async def _dial(self, key: PeerKey, peer: HttpPeer) -> PooledConnection:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._dialing.setdefault(key, done)
        try:
            conn = await self.connector.connect(peer)
        finally:
            if self._dialing.get(key) is done:
                del self._dialing[key]
            done.set_result(None)
        self.connections_opened += 1
        self._live.setdefault(key, set()).add(conn)
        conn.on_gone = self._discard
        self._multiplexed[key] = conn.multiplexed
        if conn.multiplexed:
            self._shared.setdefault(key, []).append(conn)
        return conn

    def release(self, conn: PooledConnection, clean: bool) -> None:
        """An exchange on ``conn`` is over; ``clean``: both messages completed normally."""
        leases = self._leases.get(conn)
        key = leases.pop() if leases else conn.peer.key()  # the key acquire() counted
        if not leases:
            self._leases.pop(conn, None)
        self._in_flight[key] = max(0, self._in_flight[key] - 1)
        if conn.multiplexed:
            if conn.closed:
                self._discard(conn)
            elif not conn.reusable and not conn.streams:
                conn.close_transport()  # GOAWAY received and nothing left in flight
            return
        if not (clean and conn.reusable):
            conn.close_transport()
            return
        idle = self._idle.setdefault(conn.peer.key(), collections.deque())
        idle.append(conn)
        conn.last_activity = asyncio.get_running_loop().time()
        while len(idle) > conn.peer.max_idle:
            idle.popleft().close_transport()

    def _discard(self, conn: PooledConnection) -> None:
        key = conn.peer.key()
        self._live.get(key, set()).discard(conn)
        idle = self._idle.get(key)
        if idle is not None and conn in idle:
            idle.remove(conn)
        shared = self._shared.get(key)
        if shared is not None and conn in shared:
            shared.remove(conn)

    def close(self) -> None:
        """Close every pooled connection."""
        for idle in self._idle.values():
            while idle:
                idle.pop().close_transport()
        for shared in self._shared.values():
            for conn in list(shared):
                conn.close_transport()
            shared.clear()
