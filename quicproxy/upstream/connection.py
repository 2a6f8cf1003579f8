"""PooledConnection: what the pool and health checks need of an upstream connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from protocols.base import StreamSender
from protocols.messages import RequestHead

from ..streamio import ClientStream, StreamIO
from .peer import HttpPeer

__all__ = ["PooledConnection"]


class PooledConnection(Protocol):
    """An upstream connection, whatever its transport (TCP h1/h2, QUIC h3)."""

    peer: HttpPeer
    multiplexed: bool
    requests: int
    closed: bool
    last_activity: float
    streams: dict[int, StreamIO[StreamSender]]
    on_gone: Callable[[PooledConnection], None] | None  # called once when the transport is gone

    @property
    def reusable(self) -> bool: ...

    def open_stream(self, head: RequestHead, end_stream: bool) -> ClientStream: ...

    def close_transport(self) -> None: ...
