"""UpstreamPool: reuses idle HTTP/1.1 connections per peer key (LRU, idle timeout, max idle)."""

from __future__ import annotations

import asyncio
import collections

from .connector import Connector, UpstreamConnection
from .peer import HttpPeer, PeerKey

__all__ = ["UpstreamPool"]


class UpstreamPool:
    """Hands out connections: an idle one of the same peer key if any, else a new one."""

    def __init__(self, connector: Connector | None = None, *, max_idle_per_key: int = 64) -> None:
        self.connector = connector or Connector()
        self.max_idle_per_key = max_idle_per_key
        self._idle: dict[PeerKey, collections.deque[UpstreamConnection]] = {}
        self.connections_opened = 0

    async def acquire(self, peer: HttpPeer) -> tuple[UpstreamConnection, bool]:
        """A connection to ``peer`` and whether it was reused."""
        idle = self._idle.get(peer.key())
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()  # most recently used first: the warmest connection
            if conn.reusable and now - conn.last_activity < peer.timeouts.idle:
                conn.on_gone = None
                return conn, True
            conn.close_transport()
        conn = await self.connector.connect(peer)
        self.connections_opened += 1
        return conn, False

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        """Give a connection back after an exchange; it is kept only if clean and reusable."""
        if not (reusable and conn.reusable):
            conn.close_transport()
            return
        idle = self._idle.setdefault(conn.peer.key(), collections.deque())
        idle.append(conn)
        conn.last_activity = conn.loop.time()
        conn.on_gone = self._discard
        while len(idle) > self.max_idle_per_key:
            idle.popleft().close_transport()

    def _discard(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.peer.key())
        if idle is not None and conn in idle:
            idle.remove(conn)

    def idle_count(self) -> int:
        """Connections waiting for reuse."""
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            while idle:
                idle.pop().close_transport()
